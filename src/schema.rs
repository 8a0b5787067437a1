//! JSON Schema for claims: compiling a schema (a template's, or one a
//! credential names), and what an instance violates. Patterns use the
//! linear-time `regex` engine, since schemas may come from strangers, and
//! `$ref`s to other documents are not fetched.

use serde_json::Value;

pub use jsonschema::Validator;

/// Checks `schema` against its meta-schema (draft from `$schema`; 2020-12
/// when it names none) and compiles it. The error says what is wrong.
pub fn compile(schema: &Value) -> Result<Validator, String> {
    if !schema.is_object() {
        return Err("a JSON Schema must be a JSON object".into());
    }
    jsonschema::meta::validate(schema).map_err(|e| {
        let at = e.instance_path().to_string();
        format!("not a valid JSON Schema at {}: {e}", or_root(&at))
    })?;
    jsonschema::options()
        .with_pattern_options(jsonschema::PatternOptions::regex())
        .build(schema)
        .map_err(|e| format!("the schema does not compile: {e}"))
}

/// Up to `max` violations of `instance`, each `<JSON pointer>: <what> (rule
/// <schema path>)`; empty when it conforms.
pub fn violations(validator: &Validator, instance: &Value, max: usize) -> Vec<String> {
    validator
        .iter_errors(instance)
        .take(max)
        .map(|e| {
            format!(
                "{}: {e} (rule {})",
                or_root(&e.instance_path().to_string()),
                or_root(&e.schema_path().to_string())
            )
        })
        .collect()
}

fn or_root(pointer: &str) -> &str {
    if pointer.is_empty() { "/" } else { pointer }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn violations_name_the_field_and_the_rule() {
        let v = compile(&json!({
            "type": "object",
            "required": ["name"],
            "properties": { "age": { "type": "integer", "minimum": 0 } },
        }))
        .unwrap();
        assert!(violations(&v, &json!({"name": "A", "age": 3}), 10).is_empty());
        let found = violations(&v, &json!({"age": -1}), 10);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found.iter().any(|m| m.starts_with("/: ")
                && m.contains("name")
                && m.ends_with("(rule /required)")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|m| m.starts_with("/age: ") && m.ends_with("(rule /properties/age/minimum)")),
            "{found:?}"
        );
    }

    #[test]
    fn a_schema_that_is_not_one_is_refused() {
        assert!(
            compile(&json!("string"))
                .unwrap_err()
                .contains("JSON object")
        );
        let e = compile(&json!({"type": "no-such-type"})).unwrap_err();
        assert!(e.starts_with("not a valid JSON Schema at /type"), "{e}");
        let e = compile(&json!({"pattern": "("})).unwrap_err();
        assert!(e.contains("compile") || e.contains("valid"), "{e}");
    }
}
