//! How a JSON value's type is named in error messages ("expected a string, found a mapping"),
//! the same words whether the value came from a manifest, a policy document or a CRD field.

use serde_json::Value;

/// The type of `v` as an error message names it, with its article.
pub fn name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn every_type_has_its_own_name() {
        let names: Vec<&str> = [
            json!(null),
            json!(true),
            json!(1),
            json!("s"),
            json!([]),
            json!({}),
        ]
        .iter()
        .map(super::name)
        .collect();
        assert_eq!(
            names,
            [
                "null",
                "a boolean",
                "a number",
                "a string",
                "an array",
                "a mapping"
            ]
        );
    }
}
