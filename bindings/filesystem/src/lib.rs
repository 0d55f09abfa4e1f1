//! The filesystem server binding: serves files under a location.
