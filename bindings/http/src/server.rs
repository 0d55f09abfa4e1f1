//! The http server binding (placeholder until implemented).

use zilla_engine::{Binding, BindingContext, ConfigError};

use crate::HttpFactory;

/// Builds an http server.
pub(crate) fn build(cx: BindingContext<HttpFactory>) -> Result<Box<dyn Binding>, Vec<ConfigError>> {
    Err(vec![
        cx.error("kind", "the http server is not implemented yet")
    ])
}
