//! The embedded default: with no sources configured, a `development` source whose write key is
//! generated once and kept in `{data_dir}/dev-write-key`, so SDKs keep working across restarts.

use std::fs;
use std::io::ErrorKind;

use crate::config::{Config, SourceConfig};
use crate::error::StartupError;

pub const DEV_SOURCE: &str = "development";

/// Adds the development source when none is configured; returns its write key if it did.
pub fn ensure_dev_source(config: &mut Config) -> Result<Option<String>, StartupError> {
    if !config.sources.is_empty() {
        return Ok(None);
    }
    fs::create_dir_all(&config.data_dir).map_err(StartupError::file("creating data directory", &config.data_dir))?;
    let path = config.data_dir.join("dev-write-key");
    let key = match fs::read_to_string(&path) {
        Ok(key) if !key.trim().is_empty() => key.trim().to_owned(),
        Ok(_) => write_new_key(&path)?,
        Err(e) if e.kind() == ErrorKind::NotFound => write_new_key(&path)?,
        Err(e) => return Err(StartupError::file("reading", &path)(e)),
    };
    config.sources.push(SourceConfig::new(DEV_SOURCE, key.clone()));
    Ok(Some(key))
}

/// Writes a new key readable by its owner only (`0600`): it authenticates as the source.
fn write_new_key(path: &std::path::Path) -> Result<String, StartupError> {
    let key = format!("dev_{}", uuid::Uuid::new_v4().simple());
    inlet_durable::durable_replace_private(path, key.as_bytes()).map_err(StartupError::file("writing", path))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dev_key_is_stable_across_restarts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config { data_dir: dir.path().to_owned(), ..Config::default() };
        let first = ensure_dev_source(&mut config).expect("created").expect("dev source");
        let mut again = Config { data_dir: dir.path().to_owned(), ..Config::default() };
        assert_eq!(ensure_dev_source(&mut again).expect("read").as_deref(), Some(first.as_str()));
        assert_eq!(again.sources[0].name, DEV_SOURCE);
        assert_eq!(ensure_dev_source(&mut again).expect("noop"), None, "configured sources are left alone");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join("dev-write-key")).expect("key file").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "the key file is its owner's only");
        }
    }
}
