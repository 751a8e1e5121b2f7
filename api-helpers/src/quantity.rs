//! Resource quantities (`100m`, `64Mi`, `1.5G`, `2e3`) as exact nano-unit integers, parsed,
//! compared, added and printed in canonical form as apimachinery's `resource.Quantity` does.
//! [`Quantity::value`] and [`Quantity::milli_value`] round up as `Value()` and
//! `MilliValue()` do; [`value`] and [`milli_value`] parse and round in one step.

use std::fmt;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity as Wire;

/// How a quantity prints (apimachinery's Format).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Powers of 1000 with SI suffixes (`m`, `k`, `M`, ...).
    DecimalSi,
    /// Powers of 1024 (`Ki`, `Mi`, ...).
    BinarySi,
    /// `e<n>` exponents.
    DecimalExponent,
}

/// An exact quantity: `nanos` billionths of a unit.
#[derive(Debug, Clone, Copy)]
pub struct Quantity {
    /// The value in units of 10^-9.
    pub nanos: i128,
    /// How it prints.
    pub format: Format,
}

const NANO: i128 = 1_000_000_000;

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl Quantity {
    /// Zero, printed as a decimal.
    pub const ZERO: Quantity = Quantity {
        nanos: 0,
        format: Format::DecimalSi,
    };

    /// `n` whole units (a count).
    pub fn count(n: i64) -> Quantity {
        Quantity {
            nanos: n as i128 * NANO,
            format: Format::DecimalSi,
        }
    }

    /// Parses the apiserver's quantity syntax; the error names the input.
    pub fn parse(s: &str) -> Result<Quantity, QuantityError> {
        let s = s.trim();
        let bad = || QuantityError(s.to_string());
        let (negative, body) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        let num_end = body
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(body.len());
        let (num, suffix) = body.split_at(num_end);
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err(bad());
        }
        let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
        // Decimal exponent (power of ten) and binary multiplier of the suffix.
        let (exp10, mul2): (i32, i128) = match suffix {
            "" => (0, 1),
            "n" => (-9, 1),
            "u" => (-6, 1),
            "m" => (-3, 1),
            "k" => (3, 1),
            "M" => (6, 1),
            "G" => (9, 1),
            "T" => (12, 1),
            "P" => (15, 1),
            "E" => (18, 1),
            "Ki" => (0, 1 << 10),
            "Mi" => (0, 1 << 20),
            "Gi" => (0, 1 << 30),
            "Ti" => (0, 1 << 40),
            "Pi" => (0, 1 << 50),
            "Ei" => (0, 1 << 60),
            e if e.starts_with(['e', 'E']) => (e[1..].parse::<i32>().map_err(|_| bad())?, 1),
            _ => return Err(bad()),
        };
        let format = if mul2 > 1 {
            Format::BinarySi
        } else if suffix.starts_with(['e', 'E']) {
            Format::DecimalExponent
        } else {
            Format::DecimalSi
        };
        // digits as an integer, scaled by 10^-frac_len
        let digits = format!("{int_part}{frac_part}");
        let mantissa: i128 = digits.parse().map_err(|_| bad())?;
        // An exponent near i32's limits (`1e2147483647`) is out of range, not an overflow.
        let scale = i32::try_from(frac_part.len())
            .ok()
            .and_then(|frac| exp10.checked_add(9)?.checked_sub(frac))
            .ok_or_else(bad)?;
        let mut nanos = mantissa.checked_mul(mul2).ok_or_else(bad)?;
        if scale >= 0 {
            nanos = nanos
                .checked_mul(10i128.checked_pow(scale.unsigned_abs()).ok_or_else(bad)?)
                .ok_or_else(bad)?;
        } else {
            // Below a nano: round up, as apimachinery does; a divisor past i128 leaves less
            // than one nano of anything non-zero.
            nanos = match 10i128.checked_pow(scale.unsigned_abs()) {
                Some(div) => nanos / div + i128::from(nanos % div != 0),
                None => i128::from(nanos != 0),
            };
        }
        Ok(Quantity {
            nanos: if negative { -nanos } else { nanos },
            format,
        })
    }

    /// Parses a wire quantity.
    pub fn from_wire(q: &Wire) -> Result<Quantity, QuantityError> {
        Quantity::parse(&q.0)
    }

    /// The wire form (canonical string).
    pub fn to_wire(self) -> Wire {
        Wire(self.to_string())
    }

    /// `self + other`; a zero takes the other's format (as `Quantity.Add`).
    pub fn plus(self, other: Quantity) -> Quantity {
        let format = if self.nanos == 0 {
            other.format
        } else {
            self.format
        };
        Quantity {
            nanos: self.nanos.saturating_add(other.nanos),
            format,
        }
    }

    /// The larger of the two (ties keep `self`).
    pub fn max(self, other: Quantity) -> Quantity {
        if other.nanos > self.nanos {
            other
        } else {
            self
        }
    }

    /// Rounded up to whole units (storage is counted in whole bytes).
    pub fn round_up_to_unit(self) -> Quantity {
        let rem = self.nanos.rem_euclid(NANO);
        if rem == 0 {
            return self;
        }
        Quantity {
            nanos: self.nanos - rem + NANO,
            format: self.format,
        }
    }

    /// Whole units, rounded up.
    pub fn ceil_units(self) -> i128 {
        self.round_up_to_unit().nanos / NANO
    }

    /// Whole units rounded up, saturating at `i64`'s range (`Quantity.Value()`): bytes,
    /// counts.
    pub fn value(self) -> i64 {
        saturate(self.ceil_units())
    }

    /// `milli` thousandths of a unit, printed in `format` (apimachinery's `NewMilliQuantity`).
    pub fn from_milli(milli: i64, format: Format) -> Quantity {
        Quantity {
            nanos: i128::from(milli) * 1_000_000,
            format,
        }
    }

    /// Thousandths of a unit rounded up, saturating at `i64`'s range
    /// (`Quantity.MilliValue()`): millicores.
    pub fn milli_value(self) -> i64 {
        let milli =
            self.nanos.div_euclid(1_000_000) + i128::from(self.nanos.rem_euclid(1_000_000) != 0);
        saturate(milli)
    }
}

/// A quantity string that is not one; names the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("quantity {0:?} is not valid (expected e.g. 100m, 1.5Gi, 2e3)")]
pub struct QuantityError(pub String);

/// Parses `s` and rounds it up to whole units, as `resource.MustParse(s).Value()`.
pub fn value(s: &str) -> Result<i64, QuantityError> {
    Quantity::parse(s).map(Quantity::value)
}

/// Parses `s` and rounds it up to thousandths, as `resource.MustParse(s).MilliValue()`.
pub fn milli_value(s: &str) -> Result<i64, QuantityError> {
    Quantity::parse(s).map(Quantity::milli_value)
}

fn saturate(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos == 0 {
            return f.write_str("0");
        }
        let sign = if self.nanos < 0 { "-" } else { "" };
        let abs = self.nanos.unsigned_abs();
        let whole = abs.is_multiple_of(NANO as u128);
        if self.format == Format::BinarySi && whole && abs / NANO as u128 >= 1024 {
            let mut units = abs / NANO as u128;
            let mut i = 0;
            while units.is_multiple_of(1024) && i < 6 {
                units /= 1024;
                i += 1;
            }
            let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][i];
            return write!(f, "{sign}{units}{suffix}");
        }
        // Decimal: the largest power of 1000 (from 10^-9) that divides the value.
        let mut mantissa = abs;
        let mut exp = -9i32;
        while mantissa.is_multiple_of(1000) && exp < 18 {
            mantissa /= 1000;
            exp += 3;
        }
        if self.format == Format::DecimalExponent {
            return if exp == 0 {
                write!(f, "{sign}{mantissa}")
            } else {
                write!(f, "{sign}{mantissa}e{exp}")
            };
        }
        let suffix = match exp {
            -9 => "n",
            -6 => "u",
            -3 => "m",
            0 => "",
            3 => "k",
            6 => "M",
            9 => "G",
            12 => "T",
            15 => "P",
            _ => "E",
        };
        write!(f, "{sign}{mantissa}{suffix}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    #[test]
    fn parses_and_prints_canonically() {
        for (input, canonical) in [
            ("100m", "100m"),
            ("0.5", "500m"),
            ("1000", "1k"),
            ("1500", "1500"),
            ("64Mi", "64Mi"),
            ("1536", "1536"),
            ("1Gi", "1Gi"),
            ("1.5Gi", "1536Mi"),
            ("2e3", "2e3"),
            ("1k", "1k"),
            ("0", "0"),
            ("-2", "-2"),
            ("10G", "10G"),
        ] {
            assert_eq!(q(input).to_string(), canonical, "{input}");
        }
    }

    #[test]
    fn far_below_a_nano_rounds_up_without_overflow() {
        assert_eq!(q("2e-99").nanos, 1);
        assert_eq!(q("2e-2147483648").nanos, 1);
        assert_eq!(q("0e-99").nanos, 0);
        assert_eq!(q("15e-10").nanos, 2);
        assert_eq!(q("-15e-10").nanos, -2);
    }

    #[test]
    fn rejects_garbage_naming_it() {
        for bad in [
            "",
            "abc",
            "1.2.3",
            "5Xi",
            "1e",
            "1e2147483647",
            "1e2147483640",
        ] {
            let err = Quantity::parse(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn adds_keeping_format_and_exactness() {
        assert_eq!(q("100m").plus(q("200m")).to_string(), "300m");
        assert_eq!(q("64Mi").plus(q("64Mi")).to_string(), "128Mi");
        assert_eq!(Quantity::ZERO.plus(q("1Gi")).to_string(), "1Gi");
        assert_eq!(q("1").plus(q("500m")).to_string(), "1500m");
        assert_eq!(q("1").plus(q("1")), q("2000m"));
    }

    #[test]
    fn rounds_up_to_whole_units() {
        assert_eq!(q("1500m").round_up_to_unit().to_string(), "2");
        assert_eq!(q("1n").ceil_units(), 1);
        assert_eq!(q("3").ceil_units(), 3);
    }

    #[test]
    fn value_and_milli_value_round_up_as_upstream() {
        assert_eq!(milli_value("100m"), Ok(100));
        assert_eq!(milli_value("0.5"), Ok(500));
        assert_eq!(milli_value("1u"), Ok(1));
        assert_eq!(milli_value("1n"), Ok(1));
        assert_eq!(milli_value("2.25"), Ok(2250));
        assert_eq!(value("500m"), Ok(1));
        assert_eq!(value("128Mi"), Ok(134_217_728));
        assert_eq!(value("1.5Gi"), Ok(1_610_612_736));
        assert_eq!(value("1e3"), Ok(1000));
        assert_eq!(value("-1500m"), Ok(-1));
        assert_eq!(milli_value("-1500u"), Ok(-1));
        assert_eq!(value("100E"), Ok(i64::MAX));
        assert!(value("abc").is_err());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Any integer with any suffix is exact: 1Ki is 1024, 1M is 10^6, 5m is 0.005.
            #[test]
            fn integers_with_suffixes_are_exact(n in 0i64..1_000_000, s in 0usize..14) {
                let (suffix, nanos_per): (&str, i128) = [
                    ("n", 1), ("u", 1_000), ("m", 1_000_000), ("", NANO), ("k", NANO * 1000),
                    ("M", NANO * 1_000_000), ("G", NANO * 1_000_000_000),
                    ("Ki", NANO << 10), ("Mi", NANO << 20), ("Gi", NANO << 30),
                    ("Ti", NANO << 40), ("e3", NANO * 1000), ("e-3", 1_000_000),
                    ("T", NANO * 1_000_000_000_000),
                ][s];
                prop_assert_eq!(q(&format!("{n}{suffix}")).nanos, n as i128 * nanos_per);
            }

            /// The canonical form parses back to the same value (what the apiserver stores
            /// is what a component reads).
            #[test]
            fn canonical_form_round_trips(int in -1_000_000i64..1_000_000, frac in 0u32..1000, s in 0usize..6) {
                let suffix = ["", "m", "Ki", "M", "e2", "u"][s];
                let input = format!("{int}.{frac:03}{suffix}");
                let parsed = q(&input);
                prop_assert_eq!(q(&parsed.to_string()), parsed);
            }

            /// Value() and MilliValue() never round down.
            #[test]
            fn rounding_is_upwards(nanos in -10i128.pow(20)..10i128.pow(20)) {
                let quantity = Quantity { nanos, format: Format::DecimalSi };
                prop_assert!(quantity.value() as i128 * NANO >= nanos);
                prop_assert!(quantity.milli_value() as i128 * 1_000_000 >= nanos);
                prop_assert!((quantity.value() as i128 - 1) * NANO < nanos);
            }
        }
    }

    #[test]
    fn milli_quantities_print_as_new_milli_quantity() {
        assert_eq!(
            Quantity::from_milli(150, Format::DecimalSi).to_string(),
            "150m"
        );
        assert_eq!(
            Quantity::from_milli(2000, Format::DecimalSi).to_string(),
            "2"
        );
        assert_eq!(
            Quantity::from_milli(100 * 1024 * 1024 * 1000, Format::BinarySi).to_string(),
            "100Mi"
        );
        assert_eq!(
            Quantity::from_milli(1500, Format::DecimalSi).milli_value(),
            1500
        );
    }
}
