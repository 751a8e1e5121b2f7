//! A binary heap ordered by a runtime comparator (the profile's QueueSort plugin).

/// Min-heap by `less`: `pop` returns the element that is "less" than all others.
pub struct Heap<T> {
    items: Vec<T>,
}

impl<T> Default for Heap<T> {
    fn default() -> Self {
        Heap { items: Vec::new() }
    }
}

impl<T> Heap<T> {
    /// Inserts an item.
    pub fn push(&mut self, item: T, less: impl Fn(&T, &T) -> bool) {
        self.items.push(item);
        let mut i = self.items.len() - 1;
        while i > 0 {
            let parent = (i - 1) / 2;
            if !less(&self.items[i], &self.items[parent]) {
                break;
            }
            self.items.swap(i, parent);
            i = parent;
        }
    }

    /// Removes and returns the first item.
    pub fn pop(&mut self, less: impl Fn(&T, &T) -> bool) -> Option<T> {
        if self.items.is_empty() {
            return None;
        }
        let last = self.items.len() - 1;
        self.items.swap(0, last);
        let top = self.items.pop();
        let n = self.items.len();
        let mut i = 0;
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut m = i;
            if l < n && less(&self.items[l], &self.items[m]) {
                m = l;
            }
            if r < n && less(&self.items[r], &self.items[m]) {
                m = r;
            }
            if m == i {
                break;
            }
            self.items.swap(i, m);
            i = m;
        }
        top
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_order() {
        let mut h = Heap::default();
        for v in [5, 1, 4, 2, 3] {
            h.push(v, |a: &i32, b: &i32| a < b);
        }
        let out: Vec<i32> = std::iter::from_fn(|| h.pop(|a, b| a < b)).collect();
        assert_eq!(out, vec![1, 2, 3, 4, 5]);
    }
}
