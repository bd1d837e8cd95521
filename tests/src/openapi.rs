//! Checks live answers against an OpenAPI 3.1 document: the documented
//! status codes of each operation, and the JSON body against the schema of
//! that status, with a full JSON Schema 2020-12 validator (the `jsonschema`
//! crate). Response objects may be `$ref`s to the document's components,
//! and so may schemas; only local references are followed.

use std::path::Path;

use serde_json::{json, Value};

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
        let op = &self.doc["paths"][path][method];
        if op.is_null() {
            return Err(format!("{method} {path} is not documented"));
        }
        let response = &op["responses"][status.to_string()];
        if response.is_null() {
            return Err(format!(
                "{method} {path}: status {status} is not documented"
            ));
        }
        let response = self.resolve(response)?;
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
        let validator = self
            .validator(schema)
            .map_err(|e| format!("{method} {path} {status}: unusable schema: {e}"))?;
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| format!("${}: {e}", e.instance_path))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{method} {path} {status}: {}\nbody: {body}",
                errors.join("; ")
            ))
        }
    }

    /// A JSON Schema 2020-12 validator (OpenAPI 3.1's dialect) for `schema`,
    /// a schema found in the document. The schema is wrapped in a root that
    /// carries the document's `components`, so that its local `$ref`s
    /// (`#/components/schemas/...`) resolve as they do in the document; the
    /// wrapper adds no constraint. Formats are asserted, not just annotated.
    fn validator(&self, schema: &Value) -> Result<jsonschema::Validator, String> {
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.doc["components"],
            "allOf": [schema],
        });
        jsonschema::draft202012::options()
            .should_validate_formats(true)
            .should_ignore_unknown_formats(false)
            .build(&root)
            .map_err(|e| e.to_string())
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
                    "201": {"$ref": "#/components/responses/Pair"},
                    "204": {"description": "empty"}
                }}}},
                "components": {
                    "schemas": {
                        "X": {
                            "type": "object", "required": ["a"],
                            "properties": {
                                "a": {"type": ["integer", "null"], "minimum": 0, "maximum": 10},
                                "b": {"type": "array", "items": {"type": "string"}},
                                "c": {"enum": ["on", "off"]}
                            },
                            "additionalProperties": false
                        },
                        "Pair": {
                            "type": "array",
                            "prefixItems": [{"type": "string"}, {"type": "integer"}],
                            "items": false
                        }
                    },
                    "responses": {"Pair": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pair"}}}}}
                }
            }),
        }
    }

    #[test]
    fn answers_are_checked_against_the_schema() {
        let d = doc();
        assert_eq!(
            d.check("get", "/x", 200, r#"{"a": null, "b": ["s"], "c": "on"}"#),
            Ok(())
        );
        assert_eq!(d.check("get", "/x", 200, r#"{"a": 10}"#), Ok(()));
        assert_eq!(d.check("get", "/x", 201, r#"["web", 2]"#), Ok(()));
        assert_eq!(d.check("get", "/x", 204, ""), Ok(()));
        let errs = [
            d.check("get", "/x", 200, r#"{"b": ["s"]}"#),
            d.check("get", "/x", 200, r#"{"a": "1"}"#),
            d.check("get", "/x", 200, r#"{"a": 1, "b": [1]}"#),
            d.check("get", "/x", 200, r#"{"a": 1, "c": 1}"#),
            d.check("get", "/x", 200, r#"{"a": 1, "d": 1}"#),
            d.check("get", "/x", 200, r#"{"a": -1}"#),
            d.check("get", "/x", 200, r#"{"a": 11}"#),
            d.check("get", "/x", 200, r#"{"a": 1, "c": "maybe"}"#),
            d.check("get", "/x", 200, "not json"),
            d.check("get", "/x", 201, r#"[2, "web"]"#),
            d.check("get", "/x", 201, r#"["web", 2, 3]"#),
            d.check("get", "/x", 204, "{}"),
            d.check("get", "/x", 500, "{}"),
            d.check("post", "/x", 200, "{}"),
        ];
        for (i, e) in errs.into_iter().enumerate() {
            assert!(e.is_err(), "case {i} passed");
        }
    }

    #[test]
    fn violations_name_where_they_are() {
        let error = doc()
            .check("get", "/x", 200, r#"{"a": 1, "b": ["s", 2]}"#)
            .unwrap_err();
        assert!(error.contains("$/b/1"), "{error}");
    }

    #[test]
    fn every_schema_of_the_admin_document_compiles() {
        let spec =
            OpenApi::load(&crate::harness::workspace_root().join("sidecar/openapi/admin.yaml"))
                .expect("the admin document loads");
        let mut schemas = 0;
        for (method, path) in spec.operations() {
            let responses = spec.doc["paths"][&path][&method]["responses"]
                .as_object()
                .expect("responses");
            for response in responses.values() {
                let response = spec.resolve(response).expect("resolves");
                if let Some(schema) = response.pointer("/content/application~1json/schema") {
                    spec.validator(schema)
                        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
                    schemas += 1;
                }
            }
        }
        assert!(schemas > 0);
    }
}
