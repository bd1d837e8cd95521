//! Checks live answers against an OpenAPI 3.1 document: the documented
//! status codes of each operation, and the JSON body against the schema of
//! that status (the subset of JSON Schema the project's documents use:
//! `$ref`, `type` (one or a list, `null` included), `required`,
//! `properties`, `items`, `prefixItems`, `additionalProperties`, `enum`,
//! `minimum`, `maximum`).

use std::path::Path;

use serde_json::Value;

pub struct OpenApi {
    doc: Value,
}

impl OpenApi {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let doc: Value =
            serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if doc["openapi"].as_str().is_none_or(|v| !v.starts_with("3.")) {
            return Err(format!("{}: not an OpenAPI 3 document", path.display()));
        }
        Ok(Self { doc })
    }

    /// Every `(method, path)` the document declares, sorted.
    pub fn operations(&self) -> Vec<(String, String)> {
        let mut ops = Vec::new();
        if let Some(paths) = self.doc["paths"].as_object() {
            for (path, item) in paths {
                for method in ["get", "put", "post", "delete", "patch", "head", "options"] {
                    if item.get(method).is_some() {
                        ops.push((method.to_owned(), path.clone()));
                    }
                }
            }
        }
        ops.sort();
        ops
    }

    fn resolve<'a>(&'a self, mut v: &'a Value) -> Result<&'a Value, String> {
        for _ in 0..16 {
            let Some(reference) = v.get("$ref").and_then(Value::as_str) else {
                return Ok(v);
            };
            let pointer = reference
                .strip_prefix('#')
                .ok_or_else(|| format!("only local $ref are supported: {reference}"))?;
            v = self
                .doc
                .pointer(pointer)
                .ok_or_else(|| format!("dangling $ref {reference}"))?;
        }
        Err("$ref chain too long".into())
    }

    /// Checks one answer of operation `(method, path template)`: its status
    /// is documented, and its JSON body (when the status documents one)
    /// matches the schema. Returns every violation found.
    pub fn check(&self, method: &str, path: &str, status: u16, body: &str) -> Result<(), String> {
        let op = self.doc["paths"][path][method].clone();
        if op.is_null() {
            return Err(format!("{method} {path} is not documented"));
        }
        let response = op["responses"][status.to_string()].clone();
        if response.is_null() {
            return Err(format!(
                "{method} {path}: status {status} is not documented"
            ));
        }
        let response = self.resolve(&response)?;
        let Some(schema) = response.pointer("/content/application~1json/schema") else {
            return if body.trim().is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{method} {path} {status}: documented without a body, got {body:?}"
                ))
            };
        };
        let value: Value = serde_json::from_str(body)
            .map_err(|e| format!("{method} {path} {status}: body is not JSON ({e}): {body}"))?;
        let mut errors = Vec::new();
        self.validate(schema, &value, "$", &mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{method} {path} {status}: {}\nbody: {body}",
                errors.join("; ")
            ))
        }
    }

    fn validate(&self, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
        let schema = match self.resolve(schema) {
            Ok(s) => s,
            Err(e) => {
                errors.push(format!("{at}: {e}"));
                return;
            }
        };
        if let Some(types) = schema.get("type") {
            let allowed: Vec<&str> = match types {
                Value::String(t) => vec![t.as_str()],
                Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if !allowed.iter().any(|t| type_matches(t, value)) {
                errors.push(format!("{at}: expected {allowed:?}, got {value}"));
                return;
            }
        }
        if let Some(options) = schema.get("enum").and_then(Value::as_array) {
            if !options.contains(value) {
                errors.push(format!("{at}: {value} is not one of {options:?}"));
            }
        }
        if let (Some(min), Some(n)) = (
            schema.get("minimum").and_then(Value::as_f64),
            value.as_f64(),
        ) {
            if n < min {
                errors.push(format!("{at}: {n} < minimum {min}"));
            }
        }
        if let (Some(max), Some(n)) = (
            schema.get("maximum").and_then(Value::as_f64),
            value.as_f64(),
        ) {
            if n > max {
                errors.push(format!("{at}: {n} > maximum {max}"));
            }
        }
        if let Some(object) = value.as_object() {
            for field in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !object.contains_key(field) {
                    errors.push(format!("{at}: required field {field:?} missing"));
                }
            }
            let properties = schema.get("properties").and_then(Value::as_object);
            for (key, v) in object {
                match properties.and_then(|p| p.get(key)) {
                    Some(s) => self.validate(s, v, &format!("{at}.{key}"), errors),
                    None => {
                        if let Some(extra) = schema.get("additionalProperties") {
                            match extra {
                                Value::Bool(false) => {
                                    errors.push(format!("{at}: unexpected field {key:?}"))
                                }
                                Value::Object(_) => {
                                    self.validate(extra, v, &format!("{at}.{key}"), errors)
                                }
                                _ => {}
                            }
                        }
                    }
                }
            }
        }
        if let Some(items) = value.as_array() {
            let prefix = schema.get("prefixItems").and_then(Value::as_array);
            for (i, item) in items.iter().enumerate() {
                let item_schema = prefix
                    .and_then(|p| p.get(i))
                    .or_else(|| schema.get("items"));
                if let Some(s) = item_schema {
                    self.validate(s, item, &format!("{at}[{i}]"), errors);
                }
            }
        }
    }
}

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "string" => v.is_string(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> OpenApi {
        OpenApi {
            doc: serde_json::json!({
                "openapi": "3.1.0",
                "paths": {"/x": {"get": {"responses": {
                    "200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/X"}}}},
                    "204": {"description": "empty"}
                }}}},
                "components": {"schemas": {"X": {
                    "type": "object", "required": ["a"],
                    "properties": {"a": {"type": ["integer", "null"]}, "b": {"type": "array", "items": {"type": "string"}}},
                    "additionalProperties": false
                }}}
            }),
        }
    }

    #[test]
    fn answers_are_checked_against_the_schema() {
        let d = doc();
        assert!(d
            .check("get", "/x", 200, r#"{"a": null, "b": ["s"]}"#)
            .is_ok());
        assert!(d.check("get", "/x", 204, "").is_ok());
        let errs = [
            d.check("get", "/x", 200, r#"{"b": ["s"]}"#),
            d.check("get", "/x", 200, r#"{"a": "1"}"#),
            d.check("get", "/x", 200, r#"{"a": 1, "b": [1]}"#),
            d.check("get", "/x", 200, r#"{"a": 1, "c": 1}"#),
            d.check("get", "/x", 500, "{}"),
            d.check("post", "/x", 200, "{}"),
        ];
        for e in errs {
            assert!(e.is_err());
        }
    }
}
