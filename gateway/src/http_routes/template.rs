//! Path templates of `google.api.http` (`/v1/{name=shelves/*}/books/{book.id}:publish`): their
//! parser and the matcher that takes a request path apart into variable values.
//!
//! Grammar (from `google/api/http.proto`): `Template = "/" Segments [ Verb ]`, segments `*`
//! (one segment), `**` (the rest, last only), a literal, or a variable `{field.path}` /
//! `{field.path=Segments}`; `Verb = ":" LITERAL`. Request segments are percent-decoded before
//! they are compared or bound; a variable that spans several segments gets them joined by `/`.

use std::fmt;

/// Why a template does not parse. The message names the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("path template \"{template}\": {reason}")]
pub struct TemplateError {
    /// The template as written.
    pub template: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// One segment of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// Matches exactly this text.
    Literal(String),
    /// `*`: any one non-empty segment.
    One,
    /// `**`: every remaining segment (at least one).
    Rest,
}

/// A variable: a request field path bound to segments `start..end` (`end` None: to the end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    /// The field path, split at dots (`book.id` -> `["book", "id"]`).
    pub field_path: Vec<String>,
    start: usize,
    end: Option<usize>,
}

/// A parsed path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    text: String,
    segments: Vec<Segment>,
    variables: Vec<Variable>,
    verb: Option<String>,
}

impl fmt::Display for PathTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn is_ident(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_literal(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-._~%!$&'()+,;=@".contains(c))
}

impl PathTemplate {
    /// Parses a template.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let fail = |reason| TemplateError { template: text.to_string(), reason };
        let Some(rest) = text.strip_prefix('/') else { return Err(fail("must start with '/'")) };
        // The verb follows the last ':' that is outside braces and after the last '/'.
        let (mut depth, mut split) = (0i32, None);
        for (i, c) in rest.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                '/' if depth == 0 => split = None,
                ':' if depth == 0 => split = Some(i),
                _ => {}
            }
        }
        let (body, verb) = match split {
            Some(i) => {
                let verb = &rest[i + 1..];
                if !is_literal(verb) {
                    return Err(fail("the verb after ':' must be a literal"));
                }
                (&rest[..i], Some(verb.to_string()))
            }
            None => (rest, None),
        };
        let mut template = PathTemplate { text: text.to_string(), segments: Vec::new(), variables: Vec::new(), verb };
        let mut chars = body;
        while !chars.is_empty() {
            if let Some(inner) = chars.strip_prefix('{') {
                let Some(close) = inner.find('}') else { return Err(fail("'{' without '}'")) };
                let (var, after) = (&inner[..close], &inner[close + 1..]);
                if var.contains('{') {
                    return Err(fail("variables cannot nest"));
                }
                let (path, pattern) = var.split_once('=').unwrap_or((var, "*"));
                let field_path: Vec<String> = path.split('.').map(str::to_string).collect();
                if !field_path.iter().all(|s| is_ident(s)) {
                    return Err(fail("a variable must name a field path like {book.id}"));
                }
                if template.variables.iter().any(|v| v.field_path == field_path) {
                    return Err(fail("a field is bound twice"));
                }
                let start = template.segments.len();
                for part in pattern.split('/') {
                    template.push(part).map_err(fail)?;
                }
                let end = (!matches!(template.segments.last(), Some(Segment::Rest))).then_some(template.segments.len());
                template.variables.push(Variable { field_path, start, end });
                chars = after;
            } else {
                let end = chars.find('/').unwrap_or(chars.len());
                let part = &chars[..end];
                if part.contains('}') || part.contains('{') {
                    return Err(fail("a variable must be a whole segment"));
                }
                template.push(part).map_err(fail)?;
                chars = &chars[end..];
            }
            match chars.strip_prefix('/') {
                Some(next) if !next.is_empty() => chars = next,
                Some(_) => return Err(fail("must not end with '/'")),
                None if chars.is_empty() => {}
                None => return Err(fail("a variable must be a whole segment")),
            }
        }
        if template.segments.is_empty() {
            return Err(fail("needs at least one segment"));
        }
        if template.segments.iter().rev().skip(1).any(|s| *s == Segment::Rest) {
            return Err(fail("'**' may only be the last segment"));
        }
        Ok(template)
    }

    fn push(&mut self, part: &str) -> Result<(), &'static str> {
        if matches!(self.segments.last(), Some(Segment::Rest)) {
            return Err("'**' may only be the last segment");
        }
        self.segments.push(match part {
            "*" => Segment::One,
            "**" => Segment::Rest,
            literal if is_literal(literal) => Segment::Literal(literal.to_string()),
            "" => return Err("has an empty segment"),
            _ => return Err("has a segment that is not *, ** or a literal"),
        });
        Ok(())
    }

    /// The variables, in template order.
    pub fn variables(&self) -> &[Variable] {
        &self.variables
    }

    /// How specific the template is, for ordering: literal segments before `*` before `**`,
    /// then longer templates first, then templates with a verb first.
    pub fn specificity(&self) -> (Vec<u8>, bool) {
        let rank = self
            .segments
            .iter()
            .map(|s| match s {
                Segment::Literal(_) => 0,
                Segment::One => 1,
                Segment::Rest => 2,
            })
            .collect();
        (rank, self.verb.is_none())
    }

    /// Matches a request path (without query); returns each variable's decoded value in
    /// [`PathTemplate::variables`] order, or `None` when the path does not match.
    pub fn matches(&self, path: &str) -> Option<Vec<String>> {
        let rest = path.strip_prefix('/')?;
        let rest = match &self.verb {
            Some(verb) => {
                let (head, tail) = rest.rsplit_once(':')?;
                if tail.contains('/') || percent_decode(tail)? != *verb {
                    return None;
                }
                head
            }
            None => rest,
        };
        let parts: Vec<String> = rest.split('/').map(percent_decode).collect::<Option<_>>()?;
        let has_rest = matches!(self.segments.last(), Some(Segment::Rest));
        if parts.len() < self.segments.len() || (!has_rest && parts.len() != self.segments.len()) {
            return None;
        }
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Literal(l) if parts[i] != *l => return None,
                Segment::One if parts[i].is_empty() => return None,
                Segment::Rest if parts[i..].iter().any(String::is_empty) => return None,
                _ => {}
            }
        }
        Some(self.variables.iter().map(|v| parts[v.start..v.end.unwrap_or(parts.len())].join("/")).collect())
    }
}

/// Decodes `%XX` escapes; `None` for a bad escape (which `percent-encoding` would leave as it
/// is) or a result that is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let escapes_ok = s
        .match_indices('%')
        .all(|(i, _)| s.get(i + 1..i + 3).is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit())));
    escapes_ok.then(|| percent_encoding::percent_decode_str(s).decode_utf8().ok().map(|s| s.into_owned())).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(template: &str, path: &str) -> Option<Vec<String>> {
        PathTemplate::parse(template).unwrap().matches(path)
    }

    #[test]
    fn simple_variables_and_literals() {
        assert_eq!(vars("/v1/links/{code}", "/v1/links/abc"), Some(vec!["abc".into()]));
        assert_eq!(vars("/v1/links/{code}", "/v1/links/a%20b"), Some(vec!["a b".into()]));
        assert_eq!(vars("/v1/links/{code}", "/v1/links/"), None);
        assert_eq!(vars("/v1/links/{code}", "/v1/links/a/b"), None);
        assert_eq!(vars("/v1/links/{code}", "/v2/links/a"), None);
        assert_eq!(vars("/v1/links/{code}/stats", "/v1/links/x/stats"), Some(vec!["x".into()]));
        assert_eq!(vars("/v1/links", "/v1/links"), Some(vec![]));
        assert_eq!(vars("/{code}", "/abc"), Some(vec!["abc".into()]));
        assert_eq!(vars("/{code}", "/"), None);
        assert_eq!(vars("/{code}", "/a%zz"), None);
        assert_eq!(vars("/{code}", "/a%+1"), None, "a sign is not a hex digit");
        assert_eq!(vars("/{code}", "/a%4"), None);
        assert_eq!(vars("/{code}", "/a%41%e2%82%ac"), Some(vec!["aA\u{20ac}".to_string()]));
    }

    #[test]
    fn nested_fields_patterns_and_verbs() {
        let t = PathTemplate::parse("/v1/{name=shelves/*/books/*}:publish").unwrap();
        assert_eq!(t.variables()[0].field_path, vec!["name".to_string()]);
        assert_eq!(t.matches("/v1/shelves/1/books/2:publish"), Some(vec!["shelves/1/books/2".into()]));
        assert_eq!(t.matches("/v1/shelves/1/books/2"), None);
        assert_eq!(t.matches("/v1/shelves/1/cds/2:publish"), None);
        assert_eq!(vars("/v1/{book.id}/x", "/v1/7/x"), Some(vec!["7".into()]));
        assert_eq!(vars("/files/{path=**}", "/files/a/b/c"), Some(vec!["a/b/c".into()]));
        assert_eq!(vars("/files/{path=**}", "/files"), None);
        assert_eq!(vars("/v1/links/{code}:resolve", "/v1/links/abc:resolve"), Some(vec!["abc".into()]));
        assert_eq!(vars("/v1/links/{code}:resolve", "/v1/links/abc:other"), None);
        assert_eq!(vars("/v1/*/x", "/v1/anything/x"), Some(vec![]));
    }

    #[test]
    fn bad_templates_are_rejected() {
        for bad in [
            "v1/x",
            "/v1/{x",
            "/v1/{x}}",
            "/v1/a{x}",
            "/v1/{x.}",
            "/v1/{1x}",
            "/v1/**/x",
            "/v1/",
            "/",
            "/v1/{a}/{a}",
            "/v1/x:",
            "/v1/a b",
        ] {
            assert!(PathTemplate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn no_input_panics() {
        fn prop(template: String, path: String) -> bool {
            if let Ok(t) = PathTemplate::parse(&template) {
                let _ = t.matches(&path);
            }
            let fixed = PathTemplate::parse("/v1/{name=shelves/*}/{id}/{rest=**}:do").unwrap();
            let _ = fixed.matches(&path);
            let _ = percent_decode(&path);
            true
        }
        quickcheck::QuickCheck::new().tests(2000).quickcheck(prop as fn(String, String) -> bool);
        for path in ["", "/", "//", "/:", "/v1/%", "/v1/%e2%82", "/v1/a:do", "/v1/{x}", "/\u{10ffff}"] {
            prop(path.to_string(), path.to_string());
        }
    }

    #[test]
    fn specificity_prefers_literals() {
        let literal = PathTemplate::parse("/v1/links/new").unwrap();
        let variable = PathTemplate::parse("/v1/links/{code}").unwrap();
        assert!(literal.specificity() < variable.specificity());
    }
}
