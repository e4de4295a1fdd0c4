//! The instance's own copy of the deployment package.

use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use ubiops_sandbox::Sandbox;

use crate::StartError;

/// Copies the package at `from` to `<sandbox dir>/package` and gives the
/// copy to the sandbox's user: inside the sandbox's private directory no
/// other sandbox can read it, and the code may write next to its files
/// without changing what other instances run.
pub(crate) async fn copy_in(
    sandbox: Sandbox,
    from: &Path,
) -> Result<(Sandbox, PathBuf), StartError> {
    if !from.is_dir() {
        return Err(StartError::Fault(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "the deployment package {} is not a directory",
                from.display()
            ),
        )));
    }
    if !from.join("deployment.py").is_file() {
        return Err(StartError::Failed(
            "the deployment package has no deployment.py at its top level".to_owned(),
        ));
    }
    let from = from.to_owned();
    // A package can be large: the copy must not hold up a runtime thread.
    tokio::task::spawn_blocking(move || {
        let to = sandbox.dir().join("package");
        copy_tree(&from, &to)?;
        sandbox.hand_over(&to)?;
        Ok((sandbox, to))
    })
    .await
    .map_err(io::Error::other)?
}

/// Copies directories, files and symbolic links (as links: the sandbox's
/// permissions decide what they reach), nothing else.
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(from)?;
    let kind = meta.file_type();
    if kind.is_dir() {
        fs::create_dir(to)?;
        for entry in fs::read_dir(from)? {
            let entry = entry?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
        fs::set_permissions(to, meta.permissions())
    } else if kind.is_file() {
        fs::copy(from, to).map(drop)
    } else if kind.is_symlink() {
        symlink(fs::read_link(from)?, to)
    } else {
        Ok(())
    }
}
