//! The JSON Schemas of the transcoder's messages, generated from [`crate::transcode`]'s types
//! (their doc comments are the descriptions) and checked in as `schema/*.schema.json`.
//!
//! The test of this module fails when a checked-in file differs from what the types generate;
//! `UPDATE_SCHEMAS=1 cargo test -p edgevideo-protocol` rewrites the files.

use schemars::generate::SchemaSettings;
use schemars::transform::{RecursiveTransform, Transform as _};
use schemars::{JsonSchema, Schema};
use serde::Serialize;

use crate::transcode::{CallbackError, CallbackType, FailureCode, TranscodeCallback, TranscodeJob};

/// Where the schemas say they live (`$id`); only a name, never fetched.
const ID_BASE: &str = "https://edgevideo.invalid/schema/";

/// A schema file of `schema/`: its name and how to generate it.
#[derive(Debug, Clone, Copy)]
pub struct SchemaFile {
    /// The file name in `schema/`.
    pub name: &'static str,
    /// Generates the file's schema.
    pub generate: fn() -> Schema,
}

/// Every schema file generated from this crate's types.
pub const FILES: [SchemaFile; 2] = [
    SchemaFile {
        name: "transcode-job.schema.json",
        generate: transcode_job,
    },
    SchemaFile {
        name: "transcode-callback.schema.json",
        generate: transcode_callback,
    },
];

/// The schema of [`TranscodeJob`], with examples.
pub fn transcode_job() -> Schema {
    document::<TranscodeJob>("transcode-job.schema.json", &job_examples())
}

/// The schema of [`TranscodeCallback`], with examples.
pub fn transcode_callback() -> Schema {
    document::<TranscodeCallback>("transcode-callback.schema.json", &callback_examples())
}

/// The examples of the job schema: a job on a store the transcoder writes itself, and one
/// that reads and writes through signed URLs (the local set-up).
pub fn job_examples() -> Vec<TranscodeJob> {
    let segments = |prefix: &str, n: usize| -> Vec<String> {
        (0..n).map(|i| format!("{prefix}seg{i:03}.ts")).collect()
    };
    vec![
        TranscodeJob {
            job_id: "tj_01JD3M6W1Q8Z5V7N2K4R9T0XYA".into(),
            video_id: "vid_7f3a9c".into(),
            inputs: segments("live/ch_42/b_20261125T0100Z/", 3),
            output_key: Some("videos/vid_7f3a9c/video.mp4".into()),
            output_url: None,
            callback_url: "https://edgevideo.example/api/transcoder/callback".into(),
            poster_key: Some("videos/vid_7f3a9c/poster.jpg".into()),
            poster_url: None,
            upload_part_bytes: None,
        },
        TranscodeJob {
            job_id: "tr_local0001".into(),
            video_id: "vid_local0001".into(),
            inputs: segments("http://127.0.0.1:8787/play/TOKEN/seg/brd_local0001/", 2),
            output_key: None,
            output_url: Some("http://127.0.0.1:8787/upload/MP4_TOKEN".into()),
            callback_url: "http://127.0.0.1:8787/api/transcoder/callback".into(),
            poster_key: None,
            poster_url: Some("http://127.0.0.1:8787/upload/POSTER_TOKEN".into()),
            upload_part_bytes: Some(50 * 1024 * 1024),
        },
    ]
}

/// The examples of the callback schema: a completed job with its poster, a failed job.
pub fn callback_examples() -> Vec<TranscodeCallback> {
    vec![
        TranscodeCallback {
            kind: CallbackType::Completed,
            job_id: "tj_01JD3M6W1Q8Z5V7N2K4R9T0XYA".into(),
            video_id: "vid_7f3a9c".into(),
            output_key: Some("videos/vid_7f3a9c/video.mp4".into()),
            poster_key: Some("videos/vid_7f3a9c/poster.jpg".into()),
            poster: Some(true),
            duration_seconds: Some(600.022),
            width: Some(1280),
            height: Some(720),
            size_bytes: Some(244_982_113),
            video_frames: Some(18_000),
            audio_frames: Some(28_126),
            error: None,
        },
        TranscodeCallback {
            kind: CallbackType::Failed,
            job_id: "tj_01JD3M6W1Q8Z5V7N2K4R9T0XYB".into(),
            video_id: "vid_8b21d0".into(),
            output_key: None,
            poster_key: None,
            poster: None,
            duration_seconds: None,
            width: None,
            height: None,
            size_bytes: None,
            video_frames: None,
            audio_frames: None,
            error: Some(CallbackError {
                code: FailureCode::InputNotFound,
                message: "not found: s3://edgevideo/live/ch_42/b_20261125T0100Z/seg007.ts".into(),
            }),
        },
    ]
}

/// The root schema of `T` as a file: `$id`, subschemas inlined, optional fields without
/// `null` (they are left out, never sent as null), descriptions as single-line paragraphs,
/// and `examples`.
fn document<T: JsonSchema>(file: &str, examples: &[impl Serialize]) -> Schema {
    let mut settings = SchemaSettings::draft2020_12();
    settings.inline_subschemas = true;
    let mut schema = settings.into_generator().into_root_schema_for::<T>();
    RecursiveTransform(tidy).transform(&mut schema);
    schema.insert("$id".into(), format!("{ID_BASE}{file}").into());
    let examples = examples
        .iter()
        .map(|e| serde_json::to_value(e).unwrap_or_else(|e| panic!("example of {file}: {e}")))
        .collect();
    schema.insert("examples".into(), serde_json::Value::Array(examples));
    schema
}

/// One subschema's clean-up for [`document`].
fn tidy(schema: &mut Schema) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    // `Option<T>` fields are generated as "T or null"; ours are absent instead.
    if let Some(serde_json::Value::Array(types)) = object.get_mut("type") {
        types.retain(|t| t != "null");
        if let [only] = types.as_slice() {
            let only = only.clone();
            object.insert("type".into(), only);
        }
    }
    if let Some(serde_json::Value::Array(any_of)) = object.get("anyOf") {
        let not_null: Vec<_> = any_of
            .iter()
            .filter(|s| s.get("type").and_then(|t| t.as_str()) != Some("null"))
            .cloned()
            .collect();
        if let ([only], true) = (not_null.as_slice(), object.len() == 1) {
            if let Some(only) = only.as_object() {
                *object = only.clone();
            }
        }
    }
    // Doc comments are wrapped at 100 columns; a description is one line per paragraph.
    if let Some(serde_json::Value::String(text)) = object.get_mut("description") {
        *text = text
            .split("\n\n")
            .map(|paragraph| paragraph.split('\n').collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join("\n\n");
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::transcode::JOB_ID_PATTERN;

    fn schema_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schema")
    }

    /// The checked-in schema files are what the types generate. Run with `UPDATE_SCHEMAS=1`
    /// to rewrite them.
    #[test]
    fn checked_in_schemas_match_the_types() {
        let update = std::env::var_os("UPDATE_SCHEMAS").is_some_and(|v| v == "1");
        let mut stale = Vec::new();
        for file in FILES {
            let path = schema_dir().join(file.name);
            let generated = (file.generate)();
            let text = serde_json::to_string_pretty(&generated).unwrap() + "\n";
            if update {
                std::fs::write(&path, &text).unwrap_or_else(|e| panic!("{}: {e}", file.name));
                continue;
            }
            let checked_in: serde_json::Value = std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default();
            if checked_in != *generated.as_value() {
                stale.push(file.name);
            }
        }
        assert!(
            stale.is_empty(),
            "schema/{} differ from the types in protocol/src/transcode.rs; regenerate them with \
             `UPDATE_SCHEMAS=1 cargo test -p edgevideo-protocol` and review the diff",
            stale.join(", schema/")
        );
    }

    #[test]
    fn examples_are_valid_and_round_trip() {
        for job in job_examples() {
            assert_eq!(job.validate(), Ok(()), "{job:?}");
            let value = serde_json::to_value(&job).unwrap();
            assert_eq!(serde_json::from_value::<TranscodeJob>(value).unwrap(), job);
        }
        for callback in callback_examples() {
            let value = serde_json::to_value(&callback).unwrap();
            assert_eq!(
                serde_json::from_value::<TranscodeCallback>(value).unwrap(),
                callback
            );
        }
    }

    #[test]
    fn schemas_keep_the_contract() {
        let job = transcode_job();
        let job = job.as_value();
        assert_eq!(job["additionalProperties"], false);
        assert_eq!(
            job["required"],
            serde_json::json!(["job_id", "video_id", "inputs", "callback_url"])
        );
        assert_eq!(job["properties"]["job_id"]["pattern"], JOB_ID_PATTERN);
        assert_eq!(job["properties"]["output_key"]["type"], "string");
        assert_eq!(job["properties"]["upload_part_bytes"]["minimum"], 1);
        assert_eq!(job["oneOf"].as_array().map(Vec::len), Some(2));
        assert!(!job["description"].as_str().unwrap().contains('\n'));

        let callback = transcode_callback();
        let callback = callback.as_value();
        assert_eq!(callback["additionalProperties"], false);
        assert_eq!(
            callback["required"],
            serde_json::json!(["type", "job_id", "video_id"])
        );
        assert_eq!(callback["properties"]["error"]["type"], "object");
        assert_eq!(callback["properties"]["width"]["minimum"], 1);
        assert_eq!(
            callback["allOf"][0]["if"]["properties"]["type"]["const"],
            "transcode.completed"
        );
        let codes: Vec<_> = callback["properties"]["error"]["properties"]["code"]["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .map(|variant| variant["const"].clone())
            .collect();
        assert_eq!(
            codes,
            [
                "invalid_media",
                "input_not_found",
                "storage_error",
                "internal"
            ]
        );
    }
}
