//! The json model's fast parser against serde_json: whatever it takes, serde_json takes onto
//! the same tape (anything else falls back to serde_json, so its answers stay serde_json's).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|payload: &[u8]| {
    model_json::fuzz_tape(payload);
});
