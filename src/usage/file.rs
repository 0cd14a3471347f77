//! Writing a file that holds counts or key values: atomically, and readable by its owner only.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically, readable and writable by its owner only (mode 0600 on
/// Unix), as [`Usage::save`](super::Usage::save) writes its snapshots. Public so that a program
/// writing key values (a state file, a configuration from
/// [`Config::to_json_string`](crate::Config::to_json_string)) writes them the same way.
///
/// The bytes go to a new file with a unique name (`.NAME.<pid>-<random>.tmp`) in the same
/// directory, created exclusively: an existing file or link at that name is never opened, so a
/// leftover with a wider mode or a planted symlink cannot receive them. The file is synced,
/// renamed over `path` (a link at `path` is replaced, not followed) and the directory synced, so
/// a crash leaves either the old file or the new one. On error the temporary file is removed.
///
/// Leftovers of a process killed mid-write are named `.NAME.<pid>-<random>.tmp`;
/// [`remove_leftovers`] removes them.
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// let dir = std::env::temp_dir().join(format!("tup-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let path = dir.join("state.json");
/// tower_usage_plans::usage::write_atomic(&path, b"{}")?;
/// assert_eq!(std::fs::read(&path)?, b"{}");
/// # #[cfg(unix)]
/// # {
/// use std::os::unix::fs::PermissionsExt;
/// assert_eq!(std::fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);
/// # }
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(())
/// # }
/// ```
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> std::io::Result<()> {
    let path = path.as_ref();
    let (dir, name) = split(path)?;
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).map_err(|e| std::io::Error::other(format!("no random name: {e}")))?;
    let mut tmp_name = OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}-{:016x}.tmp", std::process::id(), u64::from_le_bytes(random)));
    let tmp = dir.join(tmp_name);

    let mut options = std::fs::OpenOptions::new();
    // `create_new` is O_CREAT | O_EXCL: it fails on any existing entry, a symlink included.
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&tmp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    let renamed = written.and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = renamed {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    // Makes the rename durable; not every platform can open a directory, hence no error.
    let _ = std::fs::File::open(&dir).and_then(|d| d.sync_all());
    Ok(())
}

/// Removes what [`write_atomic`] leaves behind when a process is killed mid-write to `path`:
/// files named `.NAME.<pid>-<random>.tmp` beside it. Call it only while no other process writes `path`
/// (e.g. holding a lock). Returns how many were removed.
pub fn remove_leftovers(path: impl AsRef<Path>) -> std::io::Result<usize> {
    let (dir, name) = split(path.as_ref())?;
    let prefix = format!(".{}.", name.to_string_lossy());
    let mut removed = 0;
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        let file = entry.file_name();
        let file = file.to_string_lossy();
        let ours = file.strip_prefix(&prefix).and_then(|rest| rest.strip_suffix(".tmp")).is_some_and(is_tmp_tag);
        if ours && entry.file_type()?.is_file() {
            std::fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Whether `tag` is what [`write_atomic`] puts between the name and `.tmp`: `<pid>-<16 hex>`
/// (so the temporary files of `usage.json.x` are not taken for those of `usage.json`).
fn is_tmp_tag(tag: &str) -> bool {
    tag.split_once('-').is_some_and(|(pid, random)| {
        !pid.is_empty()
            && pid.bytes().all(|b| b.is_ascii_digit())
            && random.len() == 16
            && random.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// The directory (`.` for a bare name) and the file name of `path`.
fn split(path: &Path) -> std::io::Result<(PathBuf, OsString)> {
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{}: not a file name", path.display()))
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name.to_os_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tup-atomic-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[cfg(unix)]
    #[test]
    fn a_planted_link_or_a_readable_leftover_is_never_used() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch("planted");
        let path = dir.join("usage.json");
        // What the fixed `PATH.tmp` of earlier versions met: a 0644 leftover and a link.
        std::fs::write(dir.join("usage.json.tmp"), b"old").unwrap();
        std::fs::set_permissions(dir.join("usage.json.tmp"), std::fs::Permissions::from_mode(0o644)).unwrap();
        let target = dir.join("elsewhere");
        std::fs::write(&target, b"").unwrap();
        std::os::unix::fs::symlink(&target, dir.join(".usage.json.tmp")).unwrap();
        // A link at the path itself is replaced, not written through.
        std::os::unix::fs::symlink(&target, &path).unwrap();

        write_atomic(&path, b"secret key values").unwrap();

        assert_eq!(std::fs::read(&target).unwrap(), b"", "nothing is written through a link");
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_file(), "the link at the path was replaced by a file");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read(&path).unwrap(), b"secret key values");
        assert_eq!(std::fs::read(dir.join("usage.json.tmp")).unwrap(), b"old", "the leftover is not reused");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn leftovers_of_a_killed_write_are_removed_and_nothing_else() {
        let dir = scratch("leftovers");
        let path = dir.join("state.json");
        let tag = "123-00ff00ff00ff00ff";
        std::fs::write(dir.join(format!(".state.json.{tag}.tmp")), b"x").unwrap();
        // Not ours: another file's, the temporary file of `state.json.x`, and a name of our own.
        let others = [
            format!(".other.json.{tag}.tmp"),
            format!(".state.json.x.{tag}.tmp"),
            String::from(".state.json.mine.tmp"),
        ];
        for other in &others {
            std::fs::write(dir.join(other), b"x").unwrap();
        }
        write_atomic(&path, b"1").unwrap();
        assert_eq!(remove_leftovers(&path).unwrap(), 1);
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 4, "{names:?}");
        assert!(others.iter().all(|o| dir.join(o).exists()) && path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_path_without_a_file_name_is_an_error() {
        assert_eq!(write_atomic("/", b"x").unwrap_err().kind(), std::io::ErrorKind::InvalidInput);
    }
}
