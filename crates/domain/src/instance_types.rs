//! The instance types this server offers: the built-in list plus any the
//! operator adds, and the instance type groups newer clients name them by.

use uuid::Uuid;

use crate::stable_id::stable_id;
use crate::version::shorten;
use crate::ValidationError;

pub const MIN_MEMORY_MIB: i32 = 256;
pub const MAX_MEMORY_MIB: i32 = 16384;

/// Memory sizes (MiB) offered as `<MiB>mb` instance types.
pub const MEMORY_SIZES_MIB: &[i32] = &[256, 512, 1024, 2048, 3072, 4096, 6144, 8192, 12288, 16384];

/// GPU instance types offered besides the plain memory sizes.
pub const GPU_INSTANCE_TYPES: &[&str] = &["16384mb_t4"];

/// An instance type: `<MiB>mb`, optionally with a suffix naming an
/// accelerator (`16384mb_t4`). Its memory is the version's memory_allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceType {
    pub name: String,
    pub memory_mib: i32,
}

impl std::fmt::Display for InstanceType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl InstanceType {
    pub fn is_gpu(&self) -> bool {
        self.name.contains('_')
    }

    /// Newer clients pick an instance type group (`instance_type_group_id` or
    /// `_name`) instead of an instance type. Every instance type is its own
    /// group, named like the type, with an id derived from the name so that it
    /// is the same on every server and after every restart.
    pub fn group_id(&self) -> Uuid {
        instance_type_group_id(&self.name)
    }

    pub fn group_name(&self) -> &str {
        &self.name
    }

    fn from_memory(memory_mib: i32) -> Self {
        InstanceType {
            name: format!("{memory_mib}mb"),
            memory_mib,
        }
    }
}

/// The id of the instance type group of the instance type with this name.
pub fn instance_type_group_id(instance_type: &str) -> Uuid {
    stable_id("instance type group", instance_type)
}

/// The instance types this server offers: the built-in list plus any the
/// operator adds (`UBIOPS_EXTRA_INSTANCE_TYPES`), all of the `<MiB>mb[_suffix]`
/// shape with 256..16384 MiB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceTypeCatalog {
    types: Vec<InstanceType>,
}

impl Default for InstanceTypeCatalog {
    fn default() -> Self {
        let mut types: Vec<InstanceType> = MEMORY_SIZES_MIB
            .iter()
            .map(|&mib| InstanceType::from_memory(mib))
            .collect();
        types.extend(
            GPU_INSTANCE_TYPES
                .iter()
                .map(|name| parse_instance_type_shape(name).expect("built-in types are valid")),
        );
        InstanceTypeCatalog { types }
    }
}

impl InstanceTypeCatalog {
    /// The default catalog extended with `extra` (comma-separated names).
    pub fn with_extra(extra: &str) -> Result<Self, ValidationError> {
        let mut catalog = Self::default();
        for name in extra.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let instance_type = parse_instance_type_shape(name)?;
            if !catalog.types.contains(&instance_type) {
                catalog.types.push(instance_type);
            }
        }
        Ok(catalog)
    }

    pub fn names(&self) -> Vec<&str> {
        self.types.iter().map(|t| t.name.as_str()).collect()
    }

    pub fn by_name(&self, name: &str) -> Result<InstanceType, ValidationError> {
        self.types
            .iter()
            .find(|t| t.name == name)
            .cloned()
            .ok_or_else(|| {
                ValidationError::new(format!(
                    "Unknown instance_type '{}': use one of {}",
                    shorten(name),
                    self.names().join(", ")
                ))
            })
    }

    pub fn all(&self) -> &[InstanceType] {
        &self.types
    }

    pub fn by_group_id(&self, id: &str) -> Result<InstanceType, ValidationError> {
        let wanted = Uuid::parse_str(id).ok();
        self.types
            .iter()
            .find(|t| Some(t.group_id()) == wanted)
            .cloned()
            .ok_or_else(|| {
                ValidationError::new(format!(
                    "Unknown instance_type_group_id '{}': the groups and their ids are listed at /projects/{{project_name}}/instance-type-groups",
                    shorten(id)
                ))
            })
    }

    pub fn by_group_name(&self, name: &str) -> Result<InstanceType, ValidationError> {
        self.types
            .iter()
            .find(|t| t.group_name() == name)
            .cloned()
            .ok_or_else(|| {
                ValidationError::new(format!(
                    "Unknown instance_type_group_name '{}': use one of {}",
                    shorten(name),
                    self.names().join(", ")
                ))
            })
    }

    /// The plain (non-GPU) instance type with this much memory.
    pub fn by_memory(&self, memory_mib: i32) -> Result<InstanceType, ValidationError> {
        self.types
            .iter()
            .find(|t| t.memory_mib == memory_mib && !t.is_gpu())
            .cloned()
            .ok_or_else(|| {
                let sizes: Vec<String> = self
                    .types
                    .iter()
                    .filter(|t| !t.is_gpu())
                    .map(|t| t.memory_mib.to_string())
                    .collect();
                ValidationError::new(format!(
                    "Unsupported memory_allocation {memory_mib}: use one of {} (MiB)",
                    sizes.join(", ")
                ))
            })
    }
}

fn parse_instance_type_shape(name: &str) -> Result<InstanceType, ValidationError> {
    let invalid = || {
        ValidationError::new(format!(
            "Invalid instance type '{}': use <MiB>mb or <MiB>mb_<accelerator> with {MIN_MEMORY_MIB}..{MAX_MEMORY_MIB} MiB",
            shorten(name)
        ))
    };
    let (memory, suffix) = match name.split_once('_') {
        Some((memory, suffix)) => (memory, Some(suffix)),
        None => (name, None),
    };
    let memory_mib: i32 = memory
        .strip_suffix("mb")
        .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|digits| digits.parse().ok())
        .ok_or_else(invalid)?;
    let suffix_ok = suffix.is_none_or(|s| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    });
    if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&memory_mib) || !suffix_ok {
        return Err(invalid());
    }
    Ok(InstanceType {
        name: name.to_owned(),
        memory_mib,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_can_extend_instance_types() {
        let catalog = InstanceTypeCatalog::with_extra("8192mb_a100, 1536mb").unwrap();
        assert!(catalog.by_name("8192mb_a100").unwrap().is_gpu());
        assert_eq!(catalog.by_memory(1536).unwrap().name, "1536mb");
        assert!(InstanceTypeCatalog::with_extra("big").is_err());
        assert!(InstanceTypeCatalog::with_extra("100mb").is_err());
        assert!(InstanceTypeCatalog::with_extra("1024mb_").is_err());
    }
}
