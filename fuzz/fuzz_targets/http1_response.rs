//! The HTTP/1.1 response parsers of the http client (what upstreams send): arbitrary bytes in
//! arbitrary pieces. No panic, no hang; the body decoded is the same however it is cut.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (bool, Vec<u8>, Vec<u8>)| {
    let (head_request, data, cuts) = input;
    let mut pieces = Vec::new();
    let mut at = 0;
    for c in cuts {
        if at >= data.len() {
            break;
        }
        let n = (c as usize % 32).min(data.len() - at);
        pieces.push(&data[at..at + n]);
        at += n;
    }
    pieces.push(&data[at..]);
    let _ = binding_http::fuzzing::response(&pieces, head_request);
    let _ = binding_http::fuzzing::response(&[&data], head_request);
});
