//! Evaluating templates and conditions for one task at dispatch time.
//!
//! Every `{{ ... }}` renders non-string values as JSON, so
//! `{{ tasks.fetch.output }}` hands a downstream task real JSON. Shell
//! strings get one more step: each value a template produces is moved into
//! an environment variable and the script refers to it by name, quoted for
//! where it stands, so a value such as `x; touch pwned` is data, never code.

use std::sync::OnceLock;

use minijinja::{Environment, OutputSpanKind, UndefinedBehavior, Value};

/// Instructions one template may spend; stops runaway loops in a spec.
const FUEL: u64 = 100_000;

/// The one template environment: pure configuration, built once.
pub(crate) fn environment() -> &'static Environment<'static> {
    static ENVIRONMENT: OnceLock<Environment<'static>> = OnceLock::new();
    ENVIRONMENT.get_or_init(|| {
        let mut environment = Environment::new();
        environment.set_undefined_behavior(UndefinedBehavior::Chainable);
        environment.set_fuel(Some(FUEL));
        environment.set_formatter(|out, _state, value| {
            if value.is_undefined() || value.is_none() {
                return Ok(());
            }
            if let Some(text) = value.as_str() {
                out.write_str(text)
            } else {
                let json = serde_json::to_string(value).map_err(|error| {
                    minijinja::Error::new(minijinja::ErrorKind::BadSerialization, error.to_string())
                })?;
                out.write_str(&json)
            }
            .map_err(minijinja::Error::from)
        });
        environment
    })
}

/// Why a template or condition could not be evaluated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {detail}")]
pub struct TemplateError {
    pub what: String,
    pub detail: String,
}

impl TemplateError {
    fn new(what: &str, error: &minijinja::Error) -> TemplateError {
        let detail = match error.detail() {
            Some(detail) => format!("{}: {detail}", error.kind()),
            None => error.kind().to_string(),
        };
        TemplateError {
            what: what.to_owned(),
            detail,
        }
    }
}

/// Renders `text` over `context`; `what` names the field in errors.
pub(crate) fn render(text: &str, context: &Value, what: &str) -> Result<String, TemplateError> {
    if crate::spec::is_literal(text) {
        return Ok(text.to_owned());
    }
    environment()
        .render_str(text, context)
        .map_err(|error| TemplateError::new(what, &error))
}

/// A JSON value whose strings are templates. A string that is one
/// `{{ expression }}` and nothing else keeps the expression's JSON type.
pub(crate) fn render_json(
    value: &serde_json::Value,
    context: &Value,
    what: &str,
) -> Result<serde_json::Value, TemplateError> {
    use serde_json::Value as Json;
    Ok(match value {
        Json::String(text) => {
            if let Some(expression) = whole_expression(text) {
                let evaluated = environment()
                    .compile_expression(expression)
                    .and_then(|expression| expression.eval(context))
                    .map_err(|error| TemplateError::new(what, &error))?;
                serde_json::to_value(&evaluated).map_err(|error| TemplateError {
                    what: what.to_owned(),
                    detail: error.to_string(),
                })?
            } else {
                Json::String(render(text, context, what)?)
            }
        }
        Json::Array(items) => Json::Array(
            items
                .iter()
                .map(|item| render_json(item, context, what))
                .collect::<Result<_, _>>()?,
        ),
        Json::Object(fields) => Json::Object(
            fields
                .iter()
                .map(|(key, item)| Ok((key.clone(), render_json(item, context, what)?)))
                .collect::<Result<_, TemplateError>>()?,
        ),
        other => other.clone(),
    })
}

/// `template`, a JSON value whose strings are templates, rendered over
/// `context` (plain JSON): what maps a webhook's body to a run's inputs.
/// The same fuel bounds it as a spec's templates.
pub fn render_value(
    template: &serde_json::Value,
    context: &serde_json::Value,
    what: &str,
) -> Result<serde_json::Value, TemplateError> {
    render_json(
        template,
        &Value::from(minijinja::value::Serde(context)),
        what,
    )
}

fn whole_expression(text: &str) -> Option<&str> {
    let inner = text.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    (!inner.contains("{{") && !inner.contains("}}")).then_some(inner.trim())
}

/// Evaluates a `when:` condition.
pub(crate) fn condition(text: &str, context: &Value, what: &str) -> Result<bool, TemplateError> {
    environment()
        .compile_expression(text)
        .and_then(|expression| expression.eval(context))
        .map(|value| value.is_true())
        .map_err(|error| TemplateError::new(what, &error))
}

/// A shell script whose templated values travel as environment variables.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ShellScript {
    pub script: String,
    /// `(name, value)` pairs the script refers to.
    pub values: Vec<(String, String)>,
}

/// Prefix of the variables that carry templated values into a shell.
pub const VALUE_PREFIX: &str = "BATON_VALUE_";

/// Renders a `run:` string, replacing each value a `{{ ... }}` produced with
/// a reference to a variable holding it.
pub(crate) fn shell_script(text: &str, context: &Value) -> Result<ShellScript, TemplateError> {
    if crate::spec::is_literal(text) {
        return Ok(ShellScript {
            script: text.to_owned(),
            values: Vec::new(),
        });
    }
    let template = environment()
        .template_from_str(text)
        .map_err(|error| TemplateError::new("run", &error))?;
    let (rendered, spans) = template
        .render_with_spans(context)
        .map_err(|error| TemplateError::new("run", &error))?;
    let mut script = String::with_capacity(rendered.len() + 16 * spans.len());
    let mut values = Vec::new();
    let mut quoting = Quoting::default();
    let mut written = 0;
    for span in &spans {
        let range = span.output_range();
        let raw = &rendered[written..range.start];
        quoting.scan(raw);
        script.push_str(raw);
        written = range.end;
        let piece = &rendered[range];
        if span.kind() != OutputSpanKind::Expression {
            quoting.scan(piece);
            script.push_str(piece);
            continue;
        }
        if piece.contains('\0') {
            return Err(TemplateError {
                what: "run".to_owned(),
                detail: "a templated value holds a NUL byte, which no environment variable can"
                    .to_owned(),
            });
        }
        let name = format!("{VALUE_PREFIX}{}", values.len());
        quoting.reference(&name, &mut script);
        values.push((name, piece.to_owned()));
    }
    let rest = &rendered[written..];
    script.push_str(rest);
    Ok(ShellScript { script, values })
}

/// Where a POSIX shell lexer stands: enough to quote a variable reference so
/// its value is one word. Safety does not depend on this (an expanded
/// variable is never parsed as code); correct word splitting does.
#[derive(Default)]
struct Quoting {
    single: bool,
    double: bool,
    escaped: bool,
}

impl Quoting {
    fn scan(&mut self, raw: &str) {
        for character in raw.chars() {
            if self.escaped {
                self.escaped = false;
                continue;
            }
            match character {
                '\\' if !self.single => self.escaped = true,
                '\'' if !self.double => self.single = !self.single,
                '"' if !self.single => self.double = !self.double,
                _ => {}
            }
        }
    }

    fn reference(&mut self, name: &str, script: &mut String) {
        if self.escaped {
            // A backslash right before the value: a backslash-newline is a
            // line continuation in both bare and double-quoted text, so the
            // pair vanishes and the reference stays intact.
            script.push('\n');
            self.escaped = false;
        }
        if self.single {
            script.push_str(&format!("'\"${{{name}}}\"'"));
        } else if self.double {
            script.push_str(&format!("${{{name}}}"));
        } else {
            script.push_str(&format!("\"${{{name}}}\""));
        }
    }
}

#[cfg(test)]
mod tests {
    use minijinja::context;
    use proptest::prelude::*;

    use super::*;

    fn shell(text: &str) -> ShellScript {
        shell_script(
            text,
            &context! { inputs => context! { x => "a b; touch pwned", n => 3 } },
        )
        .unwrap()
    }

    #[test]
    fn values_become_variables_quoted_for_their_place() {
        let bare = shell("echo {{ inputs.x }} done");
        assert_eq!(bare.script, r#"echo "${BATON_VALUE_0}" done"#);
        assert_eq!(
            bare.values,
            [("BATON_VALUE_0".to_owned(), "a b; touch pwned".to_owned())]
        );
        assert_eq!(
            shell(r#"echo "x={{ inputs.x }}""#).script,
            r#"echo "x=${BATON_VALUE_0}""#
        );
        assert_eq!(
            shell("echo 'x={{ inputs.x }}'").script,
            r#"echo 'x='"${BATON_VALUE_0}"''"#
        );
        assert_eq!(
            shell("echo \\{{ inputs.n }}").script,
            "echo \\\n\"${BATON_VALUE_0}\""
        );
    }

    #[test]
    fn control_blocks_stay_code_and_their_values_stay_data() {
        let script =
            shell("{% if inputs.n > 2 %}echo {{ inputs.n }}{% endif %}; echo \"{{ inputs.x }}\"");
        assert_eq!(
            script.script,
            r#"echo "${BATON_VALUE_0}"; echo "${BATON_VALUE_1}""#
        );
        assert_eq!(script.values[0].1, "3");
    }

    #[test]
    fn json_fields_keep_the_type_of_a_lone_expression() {
        let context = context! { tasks => context! { a => context! { output => context! { n => 2, list => vec![1, 2] } } } };
        let rendered = render_json(
            &serde_json::json!({"n": "{{ tasks.a.output.n }}", "s": "n={{ tasks.a.output.n }}", "l": ["{{ tasks.a.output.list }}"]}),
            &context,
            "json",
        )
        .unwrap();
        assert_eq!(
            rendered,
            serde_json::json!({"n": 2, "s": "n=2", "l": [[1, 2]]})
        );
    }

    #[test]
    fn templates_print_structures_as_json() {
        let context = context! { inputs => context! { list => vec!["a", "b"] } };
        assert_eq!(
            render("{{ inputs.list }}", &context, "env").unwrap(),
            r#"["a","b"]"#
        );
        assert_eq!(
            render("{{ inputs.missing.deeper }}", &context, "env").unwrap(),
            ""
        );
    }

    #[test]
    fn conditions_read_outputs() {
        let context =
            context! { tasks => context! { a => context! { output => context! { ok => true } } } };
        assert!(condition("tasks.a.output.ok", &context, "when").unwrap());
        assert!(!condition("tasks.b.output.ok", &context, "when").unwrap());
        assert!(condition("tasks.a.output.ok ==", &context, "when").is_err());
    }

    proptest! {
        /// Whatever the value and whatever shell text surrounds it, the
        /// value travels in a variable: the script holds only the template's
        /// own text and references.
        #[test]
        fn values_never_reach_the_script_text(
            before in "[ -z|~]{0,12}",
            after in "[ -z|~]{0,12}",
            value in "\\PC{1,20}",
        ) {
            prop_assume!(!value.contains('\0'));
            let text = format!("{before}{{{{ inputs.v }}}}{after}");
            let script = shell_script(&text, &context! { inputs => context! { v => value.clone() } }).unwrap();
            prop_assert_eq!(&script.values, &vec![("BATON_VALUE_0".to_owned(), value.clone())]);
            let stripped = script.script.replacen("BATON_VALUE_0", "", 1);
            prop_assert!(stripped.len() <= before.len() + after.len() + 8, "{}", script.script);
        }
    }
}
#[cfg(test)]
mod hostile {
    /// Templates a hostile body or spec may bring: each ends at once with
    /// an error that says why, without building what it asks for.
    #[test]
    fn runaway_templates_end_with_an_error_that_says_why() {
        for (template, said) in [
            ("{{ 'x' * 1000000000 }}", "fuel"),
            ("{{ ('x' * 100000) * 100000 }}", "fuel"),
            (
                "{% for i in range(100000000) %}x{% endfor %}",
                "too many elements",
            ),
            ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", ""),
        ] {
            let rendered = super::render_value(
                &serde_json::Value::from(template),
                &serde_json::json!({}),
                "input",
            );
            let error = rendered.expect_err(template).to_string();
            assert!(error.starts_with("input: "), "{error}");
            assert!(error.contains(said), "{template}: {error}");
        }
    }
}
