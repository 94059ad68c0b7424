//! The name of an object a work queue carries: `namespace/name`, or `name` for cluster-scoped
//! objects (client-go's `MetaNamespaceKeyFunc`). Queues hold keys, never objects, so a reconciler
//! always reads the current object from the cache (level-triggered).

use kube::ResourceExt;
use std::fmt;

/// `namespace/name` of an object; `namespace` is empty for cluster-scoped objects.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

impl ObjectKey {
    /// A namespaced key.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> ObjectKey {
        ObjectKey { namespace: namespace.into(), name: name.into() }
    }

    /// A cluster-scoped key.
    pub fn cluster(name: impl Into<String>) -> ObjectKey {
        ObjectKey { namespace: String::new(), name: name.into() }
    }

    /// The key of `obj`.
    pub fn of<K: kube::Resource>(obj: &K) -> ObjectKey {
        ObjectKey { namespace: obj.namespace().unwrap_or_default(), name: obj.name_any() }
    }

    /// The namespace, `None` for cluster-scoped keys.
    pub fn ns(&self) -> Option<&str> {
        (!self.namespace.is_empty()).then_some(self.namespace.as_str())
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() { write!(f, "{}", self.name) } else { write!(f, "{}/{}", self.namespace, self.name) }
    }
}

/// An object's `metadata.uid`, the identity ownerReferences and expectations compare.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Uid(pub String);

impl Uid {
    /// The uid of `obj` (empty when the server has not given it one).
    pub fn of<K: kube::Resource>(obj: &K) -> Uid {
        Uid(obj.meta().uid.clone().unwrap_or_default())
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
