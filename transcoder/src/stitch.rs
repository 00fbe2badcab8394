//! Stitching local segment files (MPEG-TS, or a CMAF init segment and `.m4s` files) into a
//! local MP4 that appears atomically.
//!
//! The MP4 is written to a hidden temporary file beside the destination and renamed over it
//! only when complete, so a reader never sees a half-written file under the final name (the
//! rename is atomic on POSIX file systems; the temporary file is removed on failure).

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use crate::mux::{self, Progress, RemuxError, RemuxSummary};

/// Errors of [`stitch_files`] and [`list_segments`].
#[derive(Debug, thiserror::Error)]
pub enum StitchError {
    /// A listed input does not exist.
    #[error("missing input segment {0}")]
    MissingInput(PathBuf),
    /// A directory holds no `.ts` files (nor a CMAF init segment with `.m4s` files).
    #[error("no .ts segments (nor init*.mp4 + .m4s) in {0}")]
    NoSegments(PathBuf),
    /// A directory could not be listed.
    #[error("cannot list {path}: {source}")]
    List {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The destination is not a file path.
    #[error("output path {0} has no file name")]
    BadOutput(PathBuf),
    /// Remuxing failed.
    #[error(transparent)]
    Remux(#[from] RemuxError),
    /// The finished file could not be moved into place.
    #[error("cannot publish {path}: {source}")]
    Publish {
        /// The destination.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Lists the segments of a directory in natural order (`seg2.ts` before `seg10.ts`): its
/// `.ts` files, or for a CMAF recording its init segment (the first `init*.mp4` in natural
/// order, or else the only `.mp4`) followed by its `.m4s` files.
///
/// # Errors
/// [`StitchError::List`] when the directory cannot be read, [`StitchError::NoSegments`] when
/// it holds neither `.ts` files nor `.m4s` files with an init segment.
pub fn list_segments(dir: &Path) -> Result<Vec<PathBuf>, StitchError> {
    let list_error = |source| StitchError::List {
        path: dir.to_path_buf(),
        source,
    };
    let mut ts = Vec::new();
    let mut m4s = Vec::new();
    let mut inits = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(list_error)? {
        let path = entry.map_err(list_error)?.path();
        if !path.is_file() {
            continue;
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if name.ends_with(".ts") {
            ts.push(path);
        } else if name.ends_with(".m4s") {
            m4s.push(path);
        } else if name.ends_with(".mp4") {
            inits.push((!name.starts_with("init"), path));
        }
    }
    let by_name =
        |a: &PathBuf, b: &PathBuf| natural_cmp(&a.to_string_lossy(), &b.to_string_lossy());
    if !ts.is_empty() {
        ts.sort_by(by_name);
        return Ok(ts);
    }
    // The init segment: the first `init*.mp4`, or else the only `.mp4`.
    inits.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| by_name(&a.1, &b.1)));
    let init = match inits.first() {
        Some((false, path)) => Some(path.clone()),
        Some((true, path)) if inits.len() == 1 => Some(path.clone()),
        _ => None,
    };
    let (Some(init), false) = (init, m4s.is_empty()) else {
        return Err(StitchError::NoSegments(dir.to_path_buf()));
    };
    m4s.sort_by(by_name);
    let mut files = vec![init];
    files.extend(m4s);
    Ok(files)
}

/// Compares strings so that runs of digits compare by numeric value.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let da = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let db = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let (na, nb) = (&a[..da], &b[..db]);
                let trim = |n: &[u8]| -> usize { n.iter().take_while(|&&c| c == b'0').count() };
                let (ta, tb) = (&na[trim(na)..], &nb[trim(nb)..]);
                let order = ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb));
                if order != Ordering::Equal {
                    return order;
                }
                a = &a[da..];
                b = &b[db..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

/// Expands the `--from` arguments: one directory becomes its segments, files stay as given.
///
/// # Errors
/// [`StitchError`] when a directory cannot be listed or has no segments.
pub fn expand_inputs(from: &[PathBuf]) -> Result<Vec<PathBuf>, StitchError> {
    let mut inputs = Vec::new();
    for path in from {
        if path.is_dir() {
            inputs.extend(list_segments(path)?);
        } else {
            inputs.push(path.clone());
        }
    }
    Ok(inputs)
}

/// The temporary name a destination is written under.
pub fn temporary_path(output: &Path) -> Result<PathBuf, StitchError> {
    let name = output
        .file_name()
        .ok_or_else(|| StitchError::BadOutput(output.to_path_buf()))?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".partial-{}", std::process::id()));
    Ok(output.with_file_name(temp_name))
}

/// Stitches `inputs` into `output`, writing a temporary file and renaming it into place.
///
/// # Errors
/// [`StitchError`] when an input is missing or unreadable, the media cannot be remuxed, or
/// the output cannot be written; no file is left under `output` then.
pub fn stitch_files(
    inputs: &[PathBuf],
    output: &Path,
    progress: &impl Progress,
) -> Result<RemuxSummary, StitchError> {
    if let Some(missing) = inputs.iter().find(|p| !p.is_file()) {
        return Err(StitchError::MissingInput(missing.clone()));
    }
    let temp = temporary_path(output)?;
    let refs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    let result = mux::remux(&refs, &temp, progress);
    match result {
        Ok(summary) => match std::fs::rename(&temp, output) {
            Ok(()) => Ok(summary),
            Err(source) => {
                let _ = std::fs::remove_file(&temp);
                Err(StitchError::Publish {
                    path: output.to_path_buf(),
                    source,
                })
            }
        },
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            Err(e.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order() {
        let mut names = vec!["seg10.ts", "seg2.ts", "seg001.ts", "seg1.ts", "a.ts"];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            names,
            vec!["a.ts", "seg001.ts", "seg1.ts", "seg2.ts", "seg10.ts"]
        );
    }

    #[test]
    fn cmaf_directory_lists_init_then_segments() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "seg10.m4s",
            "seg2.m4s",
            "init.mp4",
            "index.m3u8",
            "seg1.m4s",
        ] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let names: Vec<String> = list_segments(dir.path())
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["init.mp4", "seg1.m4s", "seg2.m4s", "seg10.m4s"]);
        // Another name works when it is the only .mp4; two unnamed candidates do not.
        std::fs::rename(dir.path().join("init.mp4"), dir.path().join("a1b2.mp4")).unwrap();
        assert_eq!(list_segments(dir.path()).unwrap().len(), 4);
        std::fs::write(dir.path().join("out.mp4"), b"x").unwrap();
        assert!(matches!(
            list_segments(dir.path()),
            Err(StitchError::NoSegments(_))
        ));
    }

    #[test]
    fn temporary_path_is_hidden_beside_the_output() {
        let temp = temporary_path(Path::new("/data/out/video.mp4")).unwrap();
        assert_eq!(temp.parent(), Some(Path::new("/data/out")));
        let name = temp.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(".video.mp4.partial-"), "{name}");
        assert!(temporary_path(Path::new("/")).is_err());
    }
}
