//! `${VAR}` (and `${VAR:-default}`) expansion in every string of the config tree, before it is
//! deserialized: the downward API's NODE_NAME, POD_IP and HOST_IP reach the config this way.

use serde_norway::Value;

use super::{problem, Problem};

/// Expands `${VAR}` in every string of the tree; `$$` stands for a literal `$`.
pub(super) fn expand_env(
    value: &mut Value,
    path: &mut Vec<String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), Problem> {
    match value {
        Value::String(s) => {
            *s = expand_str(s, env).map_err(|m| problem(render_path(path), m))?;
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(format!("[{i}]"));
                expand_env(item, path, env)?;
                path.pop();
            }
        }
        Value::Mapping(map) => {
            for (key, item) in map.iter_mut() {
                path.push(key.as_str().unwrap_or("?").to_owned());
                expand_env(item, path, env)?;
                path.pop();
            }
        }
        Value::Tagged(tagged) => expand_env(&mut tagged.value, path, env)?,
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
    Ok(())
}

fn render_path(segments: &[String]) -> String {
    let mut out = String::new();
    for segment in segments {
        if !out.is_empty() && !segment.starts_with('[') {
            out.push('.');
        }
        out.push_str(segment);
    }
    out
}

/// `NAME`, or `NAME:-DEFAULT` as in the shell: the default when the variable is unset or empty,
/// so a shipped config still validates outside the pod whose env it is written for.
fn lookup(reference: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let (name, default) = match reference.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (reference, None),
    };
    let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!("{name:?} is not a valid environment variable name"));
    }
    match (env(name), default) {
        (Some(value), Some(default)) if value.is_empty() => Ok(default.to_owned()),
        (Some(value), _) => Ok(value),
        (None, Some(default)) => Ok(default.to_owned()),
        (None, None) => Err(format!("environment variable {name} is not set")),
    }
}

fn expand_str(input: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| format!("unterminated ${{ in {input:?}"))?;
            out.push_str(&lookup(&body[..end], env)?);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_expansion() {
        let env = |name: &str| (name == "A").then(|| "1".to_owned());
        assert_eq!(expand_str("x${A}y", &env).unwrap(), "x1y");
        assert_eq!(expand_str("$$A and $", &env).unwrap(), "$A and $");
        assert!(expand_str("${A", &env)
            .unwrap_err()
            .contains("unterminated"));
        assert!(expand_str("${B}", &env)
            .unwrap_err()
            .contains("B is not set"));
        assert!(expand_str("${A-B}", &env)
            .unwrap_err()
            .contains("not a valid"));
    }

    #[test]
    fn a_default_stands_in_for_an_unset_or_empty_variable() {
        let env = |name: &str| match name {
            "A" => Some("1".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        assert_eq!(expand_str("${A:-/x}", &env).unwrap(), "1");
        assert_eq!(expand_str("${B:-/run/x}", &env).unwrap(), "/run/x");
        assert_eq!(expand_str("${EMPTY:-d}", &env).unwrap(), "d");
        assert_eq!(expand_str("${B:-}", &env).unwrap(), "");
        assert_eq!(expand_str("${EMPTY}", &env).unwrap(), "");
        assert!(expand_str("${:-d}", &env)
            .unwrap_err()
            .contains("not a valid"));
    }
}
