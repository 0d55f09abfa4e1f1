//! The `.spec` script language: parsing, payloads and byte escaping.
//!
//! A script is one side of a scenario: one TCP connection, driven one
//! statement per line. See `specs/README.md` for the full reference.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

/// Per-step timeout used until a `timeout` statement changes it.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// A byte payload: `pattern` repeated `count` times.
///
/// Large payloads (`repeat N "..."`) are never materialised: readers and
/// writers generate or compare the bytes chunk by chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    pattern: Vec<u8>,
    count: u64,
}

impl Payload {
    /// A payload of `pattern` repeated `count` times.
    pub fn new(pattern: Vec<u8>, count: u64) -> Self {
        Self { pattern, count }
    }

    /// A payload of exactly these bytes.
    pub fn bytes(bytes: impl Into<Vec<u8>>) -> Self {
        Self::new(bytes.into(), 1)
    }

    /// The repeated unit.
    pub fn pattern(&self) -> &[u8] {
        &self.pattern
    }

    /// How many times the pattern repeats.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Total length in bytes.
    pub fn len(&self) -> u64 {
        self.pattern.len() as u64 * self.count
    }

    /// Whether the payload has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fills `buf` with the payload bytes starting at `offset`.
    ///
    /// `offset + buf.len()` must not exceed [`Payload::len`].
    pub fn fill(&self, offset: u64, buf: &mut [u8]) {
        debug_assert!(offset + buf.len() as u64 <= self.len());
        let plen = self.pattern.len();
        if plen == 0 {
            return;
        }
        let mut start = (offset % plen as u64) as usize;
        let mut filled = 0;
        while filled < buf.len() {
            let n = (plen - start).min(buf.len() - filled);
            buf[filled..filled + n].copy_from_slice(&self.pattern[start..start + n]);
            filled += n;
            start = 0;
        }
    }

    /// The payload bytes in `[start, end)`, clamped to the payload length.
    pub fn slice(&self, start: u64, end: u64) -> Vec<u8> {
        let end = end.min(self.len());
        let start = start.min(end);
        let mut buf = vec![0; (end - start) as usize];
        self.fill(start, &mut buf);
        buf
    }

    /// A short human-readable description, e.g. `"abc"` or
    /// `repeat 1024 "xy" (2048 bytes)`.
    pub fn describe(&self) -> String {
        if self.count == 1 {
            escape_truncated(&self.pattern, 120)
        } else {
            format!(
                "repeat {} {} ({} bytes)",
                self.count,
                escape_truncated(&self.pattern, 60),
                self.len()
            )
        }
    }
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `connect PORT` or `connect HOST:PORT`: open the side's connection.
    Connect(SocketAddr),
    /// `accept PORT`: take the next connection on the runner's listener.
    Accept(u16),
    /// `write ...`: send the payload.
    Write(Payload),
    /// `read ...`: receive exactly the payload's bytes and compare them.
    Read(Payload),
    /// `write close`: shut down the sending direction (FIN).
    WriteClose,
    /// `read closed`: expect end of stream (FIN), no more data.
    ReadClosed,
    /// `abort`: reset the connection (RST).
    Abort,
    /// `read aborted`: expect the connection to be reset by the other end.
    ReadAborted,
    /// `wait DURATION`: sleep.
    Wait(Duration),
    /// `notify NAME`: release every side waiting in `await NAME`.
    Notify(String),
    /// `await NAME`: block until some side has run `notify NAME`.
    Await(String),
}

/// One executable statement of a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// 1-based line number in the script file.
    pub line: usize,
    /// The statement as written (trimmed, before variable substitution).
    pub text: String,
    /// What to do.
    pub action: Action,
    /// How long the step may take before the side fails.
    pub timeout: Duration,
}

/// A parsed script: one side of a scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// The script's name (its file name, e.g. `client.spec`).
    pub name: String,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

impl Script {
    /// Ports this script accepts connections on.
    pub fn accept_ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.steps.iter().filter_map(|s| match s.action {
            Action::Accept(port) => Some(port),
            _ => None,
        })
    }
}

/// A script that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The script's name.
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// Names referenced as `${NAME}` in a script, sorted and deduplicated.
///
/// Lines that are comments are ignored.
pub fn variable_refs(source: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in source.lines() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("${") {
            rest = &rest[at + 2..];
            if let Some(end) = rest.find('}') {
                let name = &rest[..end];
                if is_name(name) {
                    names.insert(name.to_string());
                }
                rest = &rest[end + 1..];
            } else {
                break;
            }
        }
    }
    names
}

/// Names referenced as `${{env.NAME}}` in a zilla configuration, sorted and
/// deduplicated. Whitespace inside the braces is allowed.
pub fn env_refs(config: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = config;
    while let Some(at) = rest.find("${{") {
        rest = &rest[at + 3..];
        let Some(end) = rest.find("}}") else { break };
        let inner = rest[..end].trim();
        if let Some(name) = inner.strip_prefix("env.") {
            let name = name.trim();
            if is_name(name) {
                names.insert(name.to_string());
            }
        }
        rest = &rest[end + 2..];
    }
    names
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parses a script. `vars` supplies the values of `${NAME}` references.
pub fn parse(
    name: &str,
    source: &str,
    vars: &HashMap<String, String>,
) -> Result<Script, ParseError> {
    let mut parser = Parser {
        file: name,
        timeout: DEFAULT_STEP_TIMEOUT,
        opened: None,
        aborted: None,
        write_closed: None,
        steps: Vec::new(),
    };
    for (index, raw) in source.lines().enumerate() {
        let line = index + 1;
        parser
            .statement(line, raw, vars)
            .map_err(|message| ParseError {
                file: name.to_string(),
                line,
                message,
            })?;
    }
    Ok(Script {
        name: name.to_string(),
        steps: parser.steps,
    })
}

struct Parser<'a> {
    file: &'a str,
    timeout: Duration,
    /// Line of the `connect`/`accept` statement, once seen.
    opened: Option<usize>,
    /// Line of the `abort` statement, once seen.
    aborted: Option<usize>,
    /// Line of the `write close` statement, once seen.
    write_closed: Option<usize>,
    steps: Vec<Step>,
}

impl Parser<'_> {
    fn statement(
        &mut self,
        line: usize,
        raw: &str,
        vars: &HashMap<String, String>,
    ) -> Result<(), String> {
        let text = raw.trim();
        if text.is_empty() || text.starts_with('#') {
            return Ok(());
        }
        let substituted = substitute(text, vars)?;
        let tokens = tokenize(&substituted)?;
        let Some(Token::Word(keyword)) = tokens.first() else {
            if tokens.is_empty() {
                return Ok(());
            }
            return Err("a statement starts with a keyword, not a string literal".into());
        };
        let args = &tokens[1..];
        let action = match keyword.as_str() {
            "connect" => {
                let target = single_word(args, "connect PORT | connect HOST:PORT")?;
                Action::Connect(parse_target(target)?)
            }
            "accept" => {
                let port = single_word(args, "accept PORT")?;
                Action::Accept(parse_port(port)?)
            }
            "write" => match args {
                [Token::Word(w)] if w == "close" => Action::WriteClose,
                _ => Action::Write(parse_payload(args)?),
            },
            "read" => match args {
                [Token::Word(w)] if w == "closed" => Action::ReadClosed,
                [Token::Word(w)] if w == "aborted" => Action::ReadAborted,
                _ => Action::Read(parse_payload(args)?),
            },
            "abort" => {
                no_args(args, "abort")?;
                Action::Abort
            }
            "wait" => Action::Wait(parse_duration(single_word(args, "wait DURATION")?)?),
            "notify" => Action::Notify(parse_barrier(args, "notify NAME")?),
            "await" => Action::Await(parse_barrier(args, "await NAME")?),
            "timeout" => {
                let timeout = parse_duration(single_word(args, "timeout DURATION")?)?;
                if timeout.is_zero() {
                    return Err("timeout must be greater than zero".into());
                }
                self.timeout = timeout;
                return Ok(());
            }
            other => {
                return Err(format!(
                    "unknown statement `{other}` (expected connect, accept, write, read, abort, \
                     wait, notify, await or timeout)"
                ))
            }
        };
        self.check_connection_state(line, &action)?;
        self.steps.push(Step {
            line,
            text: text.to_string(),
            action,
            timeout: self.timeout,
        });
        Ok(())
    }

    fn check_connection_state(&mut self, line: usize, action: &Action) -> Result<(), String> {
        match action {
            Action::Connect(_) | Action::Accept(_) => {
                if let Some(opened) = self.opened {
                    return Err(format!(
                        "a script drives one connection; it was already opened on line {opened} \
                         (use another .spec file for another connection)"
                    ));
                }
                self.opened = Some(line);
            }
            Action::Write(_)
            | Action::Read(_)
            | Action::WriteClose
            | Action::ReadClosed
            | Action::Abort
            | Action::ReadAborted => {
                if self.opened.is_none() {
                    return Err(format!(
                        "no connection yet: `connect` or `accept` must come first in {}",
                        self.file
                    ));
                }
                if let Some(aborted) = self.aborted {
                    return Err(format!("the connection was aborted on line {aborted}"));
                }
                match action {
                    Action::Abort => self.aborted = Some(line),
                    Action::Write(_) | Action::WriteClose => {
                        if let Some(closed) = self.write_closed {
                            return Err(format!(
                                "cannot write: `write close` on line {closed} already ended the output"
                            ));
                        }
                        if matches!(action, Action::WriteClose) {
                            self.write_closed = Some(line);
                        }
                    }
                    _ => {}
                }
            }
            Action::Wait(_) | Action::Notify(_) | Action::Await(_) => {}
        }
        Ok(())
    }
}

/// Replaces `${NAME}` with its value from `vars`.
fn substitute(text: &str, vars: &HashMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| "unterminated `${` (expected `${NAME}`)".to_string())?;
        let name = &after[..end];
        if !is_name(name) {
            return Err(format!("invalid variable name `{name}` in `${{{name}}}`"));
        }
        let value = vars.get(name).ok_or_else(|| {
            format!("undefined variable `${{{name}}}` (only names ending in _PORT are allocated)")
        })?;
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Str(Vec<u8>),
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '#' {
            break;
        } else if c == '"' {
            chars.next();
            let mut bytes = Vec::new();
            let mut closed = false;
            while let Some((_, c)) = chars.next() {
                match c {
                    '"' => {
                        closed = true;
                        break;
                    }
                    '\\' => {
                        let (_, e) = chars
                            .next()
                            .ok_or_else(|| "unterminated escape at end of line".to_string())?;
                        match e {
                            'r' => bytes.push(b'\r'),
                            'n' => bytes.push(b'\n'),
                            't' => bytes.push(b'\t'),
                            '0' => bytes.push(0),
                            '\\' => bytes.push(b'\\'),
                            '"' => bytes.push(b'"'),
                            'x' => {
                                let mut hex = String::new();
                                for _ in 0..2 {
                                    match chars.next() {
                                        Some((_, h)) if h.is_ascii_hexdigit() => hex.push(h),
                                        _ => {
                                            return Err("`\\x` needs two hex digits, e.g. `\\x0a`".into())
                                        }
                                    }
                                }
                                bytes.push(u8::from_str_radix(&hex, 16).map_err(|e| e.to_string())?);
                            }
                            other => {
                                return Err(format!(
                                    "unknown escape `\\{other}` (use \\r \\n \\t \\0 \\\\ \\\" or \\xHH)"
                                ))
                            }
                        }
                    }
                    c => {
                        let mut utf8 = [0; 4];
                        bytes.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                    }
                }
            }
            if !closed {
                return Err(format!(
                    "unterminated string literal starting at column {}",
                    start + 1
                ));
            }
            tokens.push(Token::Str(bytes));
        } else {
            let mut end = text.len();
            while let Some(&(i, c)) = chars.peek() {
                if c.is_whitespace() || c == '"' {
                    end = i;
                    break;
                }
                chars.next();
            }
            tokens.push(Token::Word(text[start..end].to_string()));
        }
    }
    Ok(tokens)
}

fn single_word<'t>(args: &'t [Token], usage: &str) -> Result<&'t str, String> {
    match args {
        [Token::Word(w)] => Ok(w),
        _ => Err(format!("expected `{usage}`")),
    }
}

fn no_args(args: &[Token], usage: &str) -> Result<(), String> {
    if args.is_empty() {
        Ok(())
    } else {
        Err(format!("`{usage}` takes no arguments"))
    }
}

fn parse_barrier(args: &[Token], usage: &str) -> Result<String, String> {
    let name = single_word(args, usage)?;
    if is_name(name) {
        Ok(name.to_string())
    } else {
        Err(format!(
            "invalid barrier name `{name}` (letters, digits and `_`)"
        ))
    }
}

fn parse_port(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(format!("invalid port `{text}`")),
    }
}

fn parse_target(text: &str) -> Result<SocketAddr, String> {
    if text.contains(':') {
        text.parse::<SocketAddr>()
            .map_err(|_| format!("invalid address `{text}` (expected PORT or IP:PORT)"))
    } else {
        Ok(SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::LOCALHOST,
            parse_port(text)?,
        )))
    }
}

/// Parses `100ms`, `2s` or `1m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let err = || format!("invalid duration `{text}` (expected e.g. 100ms, 2s, 1m)");
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
    let (digits, unit) = text.split_at(split);
    let value: u64 = digits.parse().map_err(|_| err())?;
    match unit {
        "ms" => Ok(Duration::from_millis(value)),
        "s" => Ok(Duration::from_secs(value)),
        "m" => Ok(Duration::from_secs(value.checked_mul(60).ok_or_else(err)?)),
        _ => Err(err()),
    }
}

fn parse_count(text: &str) -> Result<u64, String> {
    let digits: String = text.chars().filter(|&c| c != '_').collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("invalid repeat count `{text}`"));
    }
    digits
        .parse()
        .map_err(|_| format!("invalid repeat count `{text}`"))
}

/// payload := [`repeat` N] item+ ; item := STRING | `hex` HEX+
fn parse_payload(args: &[Token]) -> Result<Payload, String> {
    let mut count = 1;
    let mut items = args;
    if let [Token::Word(w), rest @ ..] = args {
        if w == "repeat" {
            let [Token::Word(n), rest @ ..] = rest else {
                return Err("expected `repeat N \"text\"`".into());
            };
            count = parse_count(n)?;
            items = rest;
        }
    }
    let mut pattern = Vec::new();
    let mut saw_item = false;
    let mut i = 0;
    while i < items.len() {
        match &items[i] {
            Token::Str(bytes) => {
                pattern.extend_from_slice(bytes);
                saw_item = true;
                i += 1;
            }
            Token::Word(w) if w == "hex" => {
                i += 1;
                let start = i;
                while let Some(Token::Word(h)) = items.get(i) {
                    pattern.extend(parse_hex(h)?);
                    i += 1;
                }
                if i == start {
                    return Err("`hex` needs at least one byte, e.g. `hex 00 ff`".into());
                }
                saw_item = true;
            }
            Token::Word(w) => {
                return Err(format!(
                    "unexpected `{w}`: expected string literals (\"...\"), `hex ..`, \
                     `repeat N ..`, `close`, `closed` or `aborted`"
                ))
            }
        }
    }
    if !saw_item {
        return Err("missing payload".into());
    }
    if pattern.is_empty() {
        return Err("empty payload".into());
    }
    Ok(Payload::new(pattern, count))
}

fn parse_hex(word: &str) -> Result<Vec<u8>, String> {
    let clean = word.strip_prefix("0x").unwrap_or(word);
    if clean.is_empty() || clean.len() % 2 != 0 || !clean.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "invalid hex bytes `{word}` (expected pairs of hex digits, e.g. `0a ff`)"
        ));
    }
    (0..clean.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&clean[i..i + 2], 16).map_err(|e| e.to_string()))
        .collect()
}

/// Renders bytes as a double-quoted literal in script syntax, e.g.
/// `"ab\r\n\x00"`.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for &b in bytes {
        match b {
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            0 => out.push_str("\\0"),
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('"');
    out
}

/// Like [`escape`], but shows at most `max` bytes, followed by
/// `... (N bytes)` when truncated.
pub fn escape_truncated(bytes: &[u8], max: usize) -> String {
    if bytes.len() <= max {
        escape(bytes)
    } else {
        format!("{}... ({} bytes)", escape(&bytes[..max]), bytes.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> HashMap<String, String> {
        HashMap::from([
            ("ZILLA_PORT".to_string(), "40001".to_string()),
            ("PEER_PORT".to_string(), "40002".to_string()),
        ])
    }

    fn actions(source: &str) -> Vec<Action> {
        parse("test.spec", source, &vars())
            .unwrap()
            .steps
            .into_iter()
            .map(|s| s.action)
            .collect()
    }

    fn error(source: &str) -> ParseError {
        parse("test.spec", source, &vars()).unwrap_err()
    }

    #[test]
    fn parses_all_statements() {
        let script = "\
# a comment
connect ${ZILLA_PORT}
write \"a\" \"b\"
write hex 00 01 ff
write repeat 3 \"xy\"
read \"ok\"   # trailing comment
read hex 0a
read repeat 2 hex 01 02
wait 100ms
notify READY
await GO
write close
read closed
";
        assert_eq!(
            actions(script),
            vec![
                Action::Connect("127.0.0.1:40001".parse().unwrap()),
                Action::Write(Payload::bytes(*b"ab")),
                Action::Write(Payload::bytes([0, 1, 0xff])),
                Action::Write(Payload::new(b"xy".to_vec(), 3)),
                Action::Read(Payload::bytes(*b"ok")),
                Action::Read(Payload::bytes([0x0a])),
                Action::Read(Payload::new(vec![1, 2], 2)),
                Action::Wait(Duration::from_millis(100)),
                Action::Notify("READY".into()),
                Action::Await("GO".into()),
                Action::WriteClose,
                Action::ReadClosed,
            ]
        );
    }

    #[test]
    fn accept_abort_and_read_aborted() {
        assert_eq!(
            actions("accept ${PEER_PORT}\nread aborted\n"),
            vec![Action::Accept(40002), Action::ReadAborted]
        );
        assert_eq!(
            actions("connect 127.0.0.1:9\nabort\n"),
            vec![
                Action::Connect("127.0.0.1:9".parse().unwrap()),
                Action::Abort
            ]
        );
    }

    #[test]
    fn quoted_keywords_are_data() {
        assert_eq!(
            actions("connect 1\nwrite \"close\"\nread \"closed\"\nread \"aborted\"\n"),
            vec![
                Action::Connect("127.0.0.1:1".parse().unwrap()),
                Action::Write(Payload::bytes(*b"close")),
                Action::Read(Payload::bytes(*b"closed")),
                Action::Read(Payload::bytes(*b"aborted")),
            ]
        );
    }

    #[test]
    fn escapes() {
        assert_eq!(
            actions(
                r#"connect 1
write "\r\n\t\0\\\"\x41\xff" "é""#
            )[1],
            Action::Write(Payload::bytes(b"\r\n\t\0\\\"A\xff\xc3\xa9".to_vec()))
        );
        assert!(error("connect 1\nwrite \"\\q\"")
            .message
            .contains("unknown escape"));
        assert!(error("connect 1\nwrite \"\\x4\"")
            .message
            .contains("two hex digits"));
        assert!(error("connect 1\nwrite \"abc")
            .message
            .contains("unterminated"));
        assert!(error("connect 1\nwrite \"abc\\")
            .message
            .contains("unterminated"));
    }

    #[test]
    fn escape_round_trips() {
        let bytes: Vec<u8> = (0..=255).collect();
        let literal = escape(&bytes);
        let source = format!("connect 1\nwrite {literal}\n");
        assert_eq!(actions(&source)[1], Action::Write(Payload::bytes(bytes)));
        assert_eq!(escape(b"ab\r\n\x01\"\\"), r#""ab\r\n\x01\"\\""#);
        assert_eq!(escape_truncated(b"abcdef", 3), r#""abc"... (6 bytes)"#);
    }

    #[test]
    fn timeouts_apply_to_following_steps() {
        let script = parse(
            "t.spec",
            "connect 1\nread \"a\"\ntimeout 10s\nread \"b\"\ntimeout 250ms\nread closed\n",
            &vars(),
        )
        .unwrap();
        let timeouts: Vec<_> = script.steps.iter().map(|s| s.timeout).collect();
        assert_eq!(
            timeouts,
            vec![
                DEFAULT_STEP_TIMEOUT,
                DEFAULT_STEP_TIMEOUT,
                Duration::from_secs(10),
                Duration::from_millis(250)
            ]
        );
        assert_eq!(script.steps[2].line, 4);
        assert_eq!(script.steps[2].text, "read \"b\"");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("2").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("1.5s").is_err());
        assert!(parse_duration("2h").is_err());
    }

    #[test]
    fn errors_name_file_and_line() {
        let err = error("connect 1\n\nfrobnicate\n");
        assert_eq!((err.file.as_str(), err.line), ("test.spec", 3));
        assert!(err.message.contains("unknown statement `frobnicate`"));
        assert!(err.to_string().starts_with("test.spec:3: "));
    }

    #[test]
    fn undefined_variable() {
        let err = error("connect ${NOPE_PORT}\n");
        assert_eq!(err.line, 1);
        assert!(err.message.contains("${NOPE_PORT}"), "{}", err.message);
        assert!(error("connect ${ZILLA_PORT\n")
            .message
            .contains("unterminated"));
    }

    #[test]
    fn connection_rules() {
        assert!(error("write \"a\"\n").message.contains("no connection yet"));
        assert!(error("connect 1\naccept 2\n")
            .message
            .contains("already opened on line 1"));
        assert!(error("connect 1\nabort\nread \"x\"\n")
            .message
            .contains("aborted on line 2"));
        assert!(error("connect 1\nwrite close\nwrite \"x\"\n")
            .message
            .contains("line 2"));
        // barriers and waits are fine before the connection exists
        assert_eq!(actions("await GO\nwait 1ms\naccept 5\n").len(), 3);
    }

    #[test]
    fn payload_errors() {
        assert!(error("connect 1\nwrite\n")
            .message
            .contains("missing payload"));
        assert!(error("connect 1\nwrite \"\"\n")
            .message
            .contains("empty payload"));
        assert!(error("connect 1\nwrite hex\n")
            .message
            .contains("at least one byte"));
        assert!(error("connect 1\nwrite hex 0g\n")
            .message
            .contains("invalid hex"));
        assert!(error("connect 1\nwrite hex 123\n")
            .message
            .contains("invalid hex"));
        assert!(error("connect 1\nwrite repeat x \"a\"\n")
            .message
            .contains("repeat count"));
        assert!(error("connect 1\nwrite foo\n")
            .message
            .contains("unexpected `foo`"));
        assert!(error("connect 0\n").message.contains("invalid port"));
        assert!(error("accept 70000\n").message.contains("invalid port"));
        assert!(error("\"x\"\n").message.contains("keyword"));
    }

    #[test]
    fn hex_words_may_hold_several_bytes() {
        assert_eq!(
            actions("connect 1\nwrite hex 0001 0xff \"!\"\n")[1],
            Action::Write(Payload::bytes(vec![0, 1, 0xff, b'!']))
        );
    }

    #[test]
    fn repeat_counts_allow_underscores() {
        assert_eq!(
            actions("connect 1\nwrite repeat 1_000 \"ab\" \"c\"\n")[1],
            Action::Write(Payload::new(b"abc".to_vec(), 1000))
        );
    }

    #[test]
    fn payload_fill_and_slice() {
        let p = Payload::new(b"abc".to_vec(), 4);
        assert_eq!(p.len(), 12);
        let mut buf = [0; 7];
        p.fill(2, &mut buf);
        assert_eq!(&buf, b"cabcabc");
        assert_eq!(p.slice(10, 100), b"bc");
        assert_eq!(p.describe(), r#"repeat 4 "abc" (12 bytes)"#);
        assert_eq!(Payload::bytes(*b"hi\n").describe(), r#""hi\n""#);
    }

    #[test]
    fn finds_variable_references() {
        let refs = variable_refs(
            "# ${IGNORED_PORT}\nconnect ${ZILLA_PORT}\naccept ${PEER_PORT} ${PEER_PORT}\n",
        );
        assert_eq!(
            refs.into_iter().collect::<Vec<_>>(),
            vec!["PEER_PORT".to_string(), "ZILLA_PORT".to_string()]
        );
        let refs =
            env_refs("port: ${{env.ZILLA_PORT}}\nother: ${{ env.PEER_PORT }}\nx: ${{vault.X}}\n");
        assert_eq!(
            refs.into_iter().collect::<Vec<_>>(),
            vec!["PEER_PORT".to_string(), "ZILLA_PORT".to_string()]
        );
    }
}
