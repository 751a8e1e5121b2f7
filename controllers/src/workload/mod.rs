pub fn descriptors() -> Vec<crate::registry::ControllerDescriptor> {
    Vec::new()
}
