//! Zilla's wildcard patterns: `*` matches any run of characters (including `/`), everything else
//! matches literally, and the whole value must match.

/// True if `value` matches `pattern` (`*` = any run of characters), case-sensitively.
pub fn glob_match(pattern: &str, value: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = value.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn wildcards() {
        assert!(glob_match("/events", "/events"));
        assert!(!glob_match("/events", "/events/1"));
        assert!(glob_match("/events*", "/events/a/b"));
        assert!(glob_match("/events/*", "/events/a/b"));
        assert!(!glob_match("/events/*", "/other/a"));
        assert!(glob_match("*.example.com", "api.example.com"));
        assert!(glob_match("/a*b*c", "/aXXbYYc"));
        assert!(!glob_match("/a*b*c", "/aXXbYY"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("/ab*ab", "/ab"));
    }
}
