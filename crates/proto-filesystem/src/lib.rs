//! The filesystem protocol spoken between http-filesystem and filesystem bindings.
