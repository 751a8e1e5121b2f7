//! The Kubernetes API rules every ferrokube component applies, written once, as upstream
//! keeps them in apimachinery (`resource.Quantity`, `labels`, `api/errors`) and
//! component-helpers (`scheduling/corev1`): the scheduler, the kubelet and the controllers
//! all answer "does this selector match", "does this toleration tolerate that taint" and
//! "how many millicores is `0.1`" here, so their answers cannot disagree.

pub mod errors;
pub mod labels;
pub mod node_affinity;
pub mod quantity;
pub mod taints;
pub mod volumes;
