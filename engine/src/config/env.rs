//! `${{env.NAME}}` expressions, substituted in the raw text before YAML parsing (as Zilla does).

/// Result of substituting expressions in a config text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Substituted {
    /// The text with every `${{ env.NAME }}` replaced.
    pub text: String,
    /// Warnings for unset or empty variables.
    pub warnings: Vec<String>,
}

/// Replaces every `${{ env.NAME }}` in `text` using `lookup`. An unset variable becomes the empty
/// string and a warning, like Zilla; any other `${{ ... }}` is left as it is.
pub fn substitute(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Substituted {
    let mut out = String::with_capacity(text.len());
    let mut warnings = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 3..];
        match parse_env(after) {
            Some((name, consumed)) => {
                match lookup(name) {
                    Some(value) => {
                        if value.trim().is_empty() {
                            warnings.push(format!("Environment variable {name} is empty."));
                        }
                        out.push_str(&value);
                    }
                    None => warnings.push(format!("Environment variable {name} is not set.")),
                }
                rest = &after[consumed..];
            }
            None => {
                out.push_str("${{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Substituted {
        text: out,
        warnings,
    }
}

/// Parses `\s*env\.NAME\s*}}` and returns the name and the bytes consumed.
fn parse_env(s: &str) -> Option<(&str, usize)> {
    let trimmed = s.trim_start_matches([' ', '\t']);
    let lead = s.len() - trimmed.len();
    let body = trimmed.strip_prefix("env.")?;
    let end = body
        .find(|c: char| c.is_whitespace() || c == '}')
        .unwrap_or(body.len());
    let name = &body[..end];
    let tail = &body[end..];
    let tail_trimmed = tail.trim_start_matches([' ', '\t']);
    tail_trimmed.strip_prefix("}}")?;
    let consumed = lead + 4 + end + (tail.len() - tail_trimmed.len()) + 2;
    Some((name, consumed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("7114".into()),
            "HOST" => Some("localhost".into()),
            "BLANK" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_inside_strings_with_spaces() {
        let s = substitute("url: http://${{env.HOST}}:${{ env.PORT }}/x", env);
        assert_eq!(s.text, "url: http://localhost:7114/x");
        assert!(s.warnings.is_empty());
    }

    #[test]
    fn unset_and_empty_warn() {
        let s = substitute("a: ${{env.NOPE}}\nb: ${{env.BLANK}}", env);
        assert_eq!(s.text, "a: \nb: ");
        assert_eq!(
            s.warnings,
            vec![
                "Environment variable NOPE is not set.",
                "Environment variable BLANK is empty."
            ]
        );
    }

    #[test]
    fn unknown_resolver_is_left_alone() {
        let s = substitute("a: ${{aws.secrets.X}} ${{", env);
        assert_eq!(s.text, "a: ${{aws.secrets.X}} ${{");
    }
}
