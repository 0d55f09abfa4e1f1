//! The HTTP/1.1 request head and body parsers of the http server (what clients send): arbitrary
//! bytes in arbitrary pieces. No panic, no hang, and the same requests however it is cut.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (Vec<u8>, Vec<u8>)| {
    let (data, cuts) = input;
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
    let split = binding_http::fuzzing::requests(&pieces, 1024);
    let whole = binding_http::fuzzing::requests(&[&data], 1024);
    assert_eq!(split, whole, "the pieces changed the requests");
});
