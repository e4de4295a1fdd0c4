//! Reading the small text files that get checked.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::text::{decode_utf8, human_size};
use crate::BuildFailure;

/// Largest deployment or requirements file that is checked. Real ones are a
/// few kilobytes; the cap bounds the parser's time and memory on hostile input.
pub(crate) const MAX_SOURCE_BYTES: u64 = 1024 * 1024;

/// Reads a UTF-8 text file of at most [`MAX_SOURCE_BYTES`].
pub(crate) fn read_source(path: &Path, shown: &str) -> Result<String, BuildFailure> {
    let file = File::open(path)
        .map_err(|err| BuildFailure::new(format!("Could not read {shown}: {err}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_SOURCE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| BuildFailure::new(format!("Could not read {shown}: {err}")))?;
    if bytes.len() as u64 > MAX_SOURCE_BYTES {
        return Err(BuildFailure::new(format!(
            "{shown} is larger than {}; keep data and models in separate files",
            human_size(MAX_SOURCE_BYTES)
        )));
    }
    decode_utf8(bytes, shown).map_err(BuildFailure::new)
}
