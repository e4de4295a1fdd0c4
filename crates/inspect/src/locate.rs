//! Finding the deployment file in an extracted tree.

use std::collections::VecDeque;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::{BuildFailure, DisplayPath, Language};

/// How far the hint search looks for a misplaced deployment file; deeper trees
/// are not worth walking just to improve a message.
const HINT_MAX_DEPTH: usize = 4;
const HINT_MAX_ENTRIES: usize = 10_000;

/// Returns the path of the deployment file relative to `root`: at the root,
/// or inside exactly one top-level folder. A file at the root wins over
/// folders, as the runtime would look there first.
pub(crate) fn find_deployment_file(
    root: &Path,
    language: Language,
) -> Result<PathBuf, BuildFailure> {
    let file_name = language.deployment_file_name();
    if is_regular_file(&root.join(file_name)) {
        return Ok(PathBuf::from(file_name));
    }

    let mut candidates = Vec::new();
    for (name, path) in visible_children(root).map_err(unreadable)? {
        if is_dir(&path) && is_regular_file(&path.join(file_name)) {
            candidates.push(name);
        }
    }
    candidates.sort();

    match candidates.as_slice() {
        [only] => Ok(Path::new(only).join(file_name)),
        [] => Err(missing(root, file_name)),
        several => {
            let names: Vec<String> = several
                .iter()
                .map(|name| format!("'{}'", DisplayPath(Path::new(name))))
                .collect();
            Err(BuildFailure::new(format!(
                "Found {file_name} in several top-level folders ({}): put exactly one deployment in the zip",
                names.join(", ")
            )))
        }
    }
}

fn missing(root: &Path, file_name: &str) -> BuildFailure {
    let mut message = format!(
        "Could not find the deployment file: put {file_name} at the root of the zip or inside a single top-level folder"
    );
    if let Some(found) = find_lookalike(root, file_name) {
        let exact = found.file_name().is_some_and(|name| name == file_name);
        if exact {
            message.push_str(&format!(
                " ('{}' is too deeply nested)",
                DisplayPath(&found)
            ));
        } else {
            message.push_str(&format!(
                " (found '{}'; the name is case-sensitive)",
                DisplayPath(&found)
            ));
        }
    }
    BuildFailure::new(message)
}

/// Looks, breadth first and within bounds, for a file that was probably meant
/// to be the deployment file: wrong case, or nested too deep.
fn find_lookalike(root: &Path, file_name: &str) -> Option<PathBuf> {
    let mut queue = VecDeque::from([(PathBuf::new(), 0usize)]);
    let mut visited = 0usize;
    while let Some((relative, depth)) = queue.pop_front() {
        let children = visible_children(&root.join(&relative)).ok()?;
        for (name, path) in children {
            visited += 1;
            if visited > HINT_MAX_ENTRIES {
                return None;
            }
            let child = relative.join(&name);
            if is_dir(&path) {
                if depth + 1 < HINT_MAX_DEPTH {
                    queue.push_back((child, depth + 1));
                }
            } else if name.eq_ignore_ascii_case(file_name) && is_regular_file(&path) {
                return Some(child);
            }
        }
    }
    None
}

/// Children of a folder that count when judging the layout: macOS resource
/// forks (`__MACOSX`) and hidden files such as `.DS_Store` are ignored.
/// Returned sorted, so messages do not depend on directory order.
fn visible_children(dir: &Path) -> io::Result<Vec<(String, PathBuf)>> {
    let mut children = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            // Names from a zip are always valid UTF-8 once extracted.
            continue;
        };
        if name.starts_with('.') || name == "__MACOSX" {
            continue;
        }
        children.push((name, entry.path()));
    }
    children.sort();
    Ok(children)
}

// Links are never followed: the tree should hold none, and a link could
// point anywhere on the build machine.
fn is_regular_file(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_file())
}

fn is_dir(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_dir())
}

fn unreadable(err: io::Error) -> BuildFailure {
    BuildFailure::new(format!(
        "Could not read the extracted deployment files: {err}"
    ))
}
