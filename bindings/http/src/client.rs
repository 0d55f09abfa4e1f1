//! The http client binding (placeholder until implemented).

use zilla_engine::{Binding, BindingContext, ConfigError};

use crate::HttpFactory;

/// Builds an http client.
pub(crate) fn build(cx: BindingContext<HttpFactory>) -> Result<Box<dyn Binding>, Vec<ConfigError>> {
    Err(vec![
        cx.error("kind", "the http client is not implemented yet")
    ])
}
