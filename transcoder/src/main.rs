//! Command-line entry point.
//!
//! * `transcoder stitch --from <dir | files... | s3://bucket/prefix | URLs...> --to <file |
//!   s3://bucket/key>`: remux segments into one MP4, with a progress bar on a terminal (plain
//!   log lines otherwise) and a JSON summary on stdout.
//! * `transcoder serve --listen 127.0.0.1:8790`: the signed job server (see the library's
//!   `server` module); configured by `TRANSCODER_SECRET` (required, `whsec_...`),
//!   `TRANSCODER_STORE` (`s3://bucket[/prefix]` or a directory), `TRANSCODER_STATE_DIR` and
//!   `TRANSCODER_WORKERS`, plus the standard `AWS_*` variables for S3/R2.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use edgevideo_protocol::webhooks::WebhookKey;
use edgevideo_transcoder::demux::ReadProgress;
use edgevideo_transcoder::mux::Progress;
use edgevideo_transcoder::server::{self, ServerConfig};
use edgevideo_transcoder::storage::{Bucket, Source, Storage};
use edgevideo_transcoder::{poster, stitch};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Parser)]
#[command(
    name = "transcoder",
    version,
    about = "Stitch MPEG-TS or CMAF segments into one MP4"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Remux segments into one progressive MP4 (moov first).
    Stitch {
        /// A directory of .ts files (or init*.mp4 + .m4s files), files in order (CMAF: the
        /// init segment first), an s3://bucket/prefix, or URLs.
        #[arg(long, required = true, num_args = 1..)]
        from: Vec<String>,
        /// Output file, or s3://bucket/key.
        #[arg(long)]
        to: String,
        /// Also write the first keyframe as a JPEG: a file, or s3://bucket/key.
        #[arg(long)]
        poster: Option<String>,
    },
    /// Run the signed job server.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8790")]
        listen: String,
    },
}

/// Progress on stderr: a bar on a terminal, a log line every 10 % otherwise.
struct CliProgress {
    bar: Option<ProgressBar>,
    total: AtomicU64,
    done: AtomicU64,
    logged_tenths: AtomicU64,
}

impl CliProgress {
    fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            if let Ok(style) = ProgressStyle::with_template(
                "{msg:>9} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        Self {
            bar,
            total: AtomicU64::new(0),
            done: AtomicU64::new(0),
            logged_tenths: AtomicU64::new(0),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl ReadProgress for CliProgress {
    fn advance(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
            return;
        }
        let done = self.done.fetch_add(bytes, Ordering::Relaxed) + bytes;
        let total = self.total.load(Ordering::Relaxed).max(1);
        let tenths = done * 10 / total;
        if tenths > self.logged_tenths.load(Ordering::Relaxed) {
            self.logged_tenths.store(tenths, Ordering::Relaxed);
            eprintln!("progress {}% ({done} of {total} bytes read)", tenths * 10);
        }
    }
}

impl Progress for CliProgress {
    fn start(&self, total_bytes: u64) {
        self.total.store(total_bytes, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.set_length(total_bytes);
        }
    }

    fn phase(&self, name: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(name.to_string()),
            None => eprintln!("{name}"),
        }
    }
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Stitch { from, to, poster } => run_stitch(&from, &to, poster.as_deref()),
        Command::Serve { listen } => run_serve(listen),
    }
}

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

fn run_stitch(from: &[String], to: &str, poster: Option<&str>) -> anyhow::Result<()> {
    let started = Instant::now();
    let remote_in = from.iter().any(|f| f.starts_with("s3://") || is_url(f));
    let remote_out = to.starts_with("s3://") || poster.is_some_and(|p| p.starts_with("s3://"));
    let work = if remote_in || remote_out {
        Some(tempfile::tempdir().context("cannot create a temporary directory")?)
    } else {
        None
    };

    // Inputs as local files.
    let inputs: Vec<PathBuf> = if remote_in {
        let storage = Storage::new()?;
        let mut sources = Vec::new();
        let mut bucket = None;
        for item in from {
            if let Some(rest) = item.strip_prefix("s3://") {
                let (name, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                let b = Bucket::open(&format!("s3://{name}"))?;
                let keys = storage.list_segments(&b, prefix)?;
                if keys.is_empty() {
                    bail!("no .ts objects (nor init*.mp4 + .m4s) under {item}");
                }
                sources.extend(keys.into_iter().map(Source::Object));
                if bucket.is_some() && from.len() > 1 {
                    bail!("give one s3:// prefix per run");
                }
                bucket = Some(b);
            } else if is_url(item) {
                sources.push(Source::Url(item.clone()));
            } else {
                sources.extend(
                    stitch::expand_inputs(&[PathBuf::from(item)])?
                        .into_iter()
                        .map(Source::File),
                );
            }
        }
        let dir = work
            .as_ref()
            .map_or_else(std::env::temp_dir, |w| w.path().to_path_buf());
        eprintln!("downloading {} segments", sources.len());
        storage.stage(bucket.as_ref(), &sources, &dir)?
    } else {
        let paths: Vec<PathBuf> = from.iter().map(PathBuf::from).collect();
        stitch::expand_inputs(&paths)?
    };

    let progress = CliProgress::new();
    let local_out: PathBuf = match &work {
        Some(w) if remote_out => w.path().join("output.mp4"),
        _ => PathBuf::from(to),
    };
    let result = stitch::stitch_files(&inputs, &local_out, &progress);
    progress.finish();
    let summary = result?;

    let local_poster = match (poster, &work) {
        (Some(p), Some(w)) if p.starts_with("s3://") => Some(w.path().join("poster.jpg")),
        (Some(p), _) => Some(PathBuf::from(p)),
        (None, _) => None,
    };
    if let Some(path) = &local_poster {
        poster::make_poster(&inputs, path)?;
    }
    upload_if_remote(&local_out, to)?;
    if let (Some(path), Some(target)) = (&local_poster, poster) {
        upload_if_remote(path, target)?;
    }
    let mut value = serde_json::to_value(&summary)?;
    if let Some(object) = value.as_object_mut() {
        object.insert("output".into(), serde_json::Value::String(to.to_string()));
        if let Some(target) = poster {
            object.insert(
                "poster".into(),
                serde_json::Value::String(target.to_string()),
            );
        }
        object.insert(
            "elapsed_seconds".into(),
            serde_json::json!((started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0),
        );
    }
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

/// Uploads `local` when `target` is `s3://bucket/key` (local targets are already in place).
fn upload_if_remote(local: &Path, target: &str) -> anyhow::Result<()> {
    if let Some(rest) = target.strip_prefix("s3://") {
        let Some((name, key)) = rest.split_once('/') else {
            bail!("{target}: s3://bucket/key needs a key");
        };
        eprintln!("uploading to {target}");
        let bucket = Bucket::open(&format!("s3://{name}"))?;
        Storage::new()?.upload_object(local, &bucket, key)?;
    }
    Ok(())
}

fn run_serve(listen: String) -> anyhow::Result<()> {
    let secret = std::env::var("TRANSCODER_SECRET")
        .context("TRANSCODER_SECRET (whsec_...) must be set to verify jobs and sign callbacks")?;
    let key = WebhookKey::from_secret(secret.trim())?;
    let bucket = match std::env::var("TRANSCODER_STORE") {
        Ok(spec) if !spec.is_empty() => Some(Bucket::open(&spec)?),
        _ => None,
    };
    let state_dir = std::env::var_os("TRANSCODER_STATE_DIR")
        .map_or_else(server::default_state_dir, PathBuf::from);
    let workers = std::env::var("TRANSCODER_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(1);
    let retry_ms = std::env::var("TRANSCODER_CALLBACK_RETRY_MS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(1000);
    server::serve(ServerConfig {
        listen,
        key,
        bucket,
        state_dir,
        workers,
        callback_retry_delay: Duration::from_millis(retry_ms),
    })?;
    Ok(())
}
