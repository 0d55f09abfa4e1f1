//! The core models, as Zilla's `model-core`: `string`, `int32`, `int64`, `float`, `double` and
//! `boolean`. None needs a catalog; each checks a whole payload and passes it on unchanged.
//!
//! ```yaml
//! content: int32                      # shorthand: defaults
//! content: { model: int32, format: text, range: "[0,100)", multiple: 5 }
//! content: { model: string, minLength: 1, maxLength: 64, pattern: "[a-z]+" }
//! ```
//!
//! A rejected payload is reported as `MODEL_CORE_VALIDATION_FAILED`.

mod number;
mod string;

pub use number::{
    BooleanFactory, BooleanOptions, DoubleFactory, FloatFactory, FloatOptions, Format,
    Int32Factory, Int64Factory, IntegerOptions,
};
pub use string::{Encoding, StringFactory, StringOptions};

use zilla_engine::{Invalid, Why};

/// The event a rejected payload is reported with (Zilla's `model.core.validation.failed`).
pub const EVENT: &str = "MODEL_CORE_VALIDATION_FAILED";

/// Zilla's message for a payload that is not of the model's type, with our detail after it.
fn invalid(why: Why, model: &str, detail: impl std::fmt::Display) -> Invalid {
    Invalid {
        event: EVENT,
        why,
        message: format!(
            "A message payload failed validation. A field was not the expected type ({model}): {detail}."
        ),
    }
}
