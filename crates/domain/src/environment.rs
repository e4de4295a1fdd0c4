//! Environments: how newer clients (`ubiops` 4.x, `ubiops-cli`) name what API
//! v2.1 calls a version's `language`. Every supported language is one built-in
//! system environment, named after the language with dots and underscores
//! turned into dashes (`python3.8_cuda` is `python3-8-cuda`), the style of the
//! hosted service's names. `language` and `environment` are two views of one
//! setting, like `memory_allocation` and `instance_type`.

use uuid::Uuid;

use crate::stable_id::stable_id;
use crate::version::LANGUAGES;
use crate::ValidationError;

/// The one tag every system environment has, for clients that wait on a tag.
pub const SYSTEM_ENVIRONMENT_TAG: &str = "latest";

/// A built-in environment: one per supported language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemEnvironment {
    pub language: &'static str,
    /// "Python 3.8", the language's description.
    pub display_name: &'static str,
}

impl SystemEnvironment {
    pub fn name(&self) -> String {
        environment_name(self.language)
    }

    pub fn id(&self) -> Uuid {
        stable_id("environment", &self.name())
    }

    /// The id of its one tag.
    pub fn tag_id(&self) -> Uuid {
        stable_id("environment tag", &self.name())
    }

    pub fn needs_gpu(&self) -> bool {
        self.language.ends_with("_cuda")
    }
}

/// The environment name of a language: `python3.8_cuda` -> `python3-8-cuda`.
pub fn environment_name(language: &str) -> String {
    language.replace(['.', '_'], "-")
}

pub fn system_environments() -> impl Iterator<Item = SystemEnvironment> {
    LANGUAGES
        .iter()
        .map(|&(language, display_name)| SystemEnvironment {
            language,
            display_name,
        })
}

/// The system environment with this name, if there is one.
pub fn system_environment(name: &str) -> Option<SystemEnvironment> {
    system_environments().find(|environment| environment.name() == name)
}

/// The language an `environment` value stands for. The language's own name is
/// accepted too (`python3.8`), so a value copied from `language` works.
pub fn language_of_environment(field: &str, name: &str) -> Result<&'static str, ValidationError> {
    system_environment(name)
        .map(|environment| environment.language)
        .or_else(|| {
            LANGUAGES
                .iter()
                .find(|(language, _)| *language == name)
                .map(|(language, _)| *language)
        })
        .ok_or_else(|| {
            let names: Vec<String> = system_environments().map(|e| e.name()).collect();
            ValidationError::new(format!(
                "Unknown {field} '{}': use one of {}",
                name.chars().take(80).collect::<String>(),
                names.join(", ")
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_is_one_system_environment() {
        let names: Vec<String> = system_environments().map(|e| e.name()).collect();
        assert_eq!(names.len(), LANGUAGES.len());
        assert!(names.contains(&"python3-7".to_owned()));
        assert!(names.contains(&"python3-11-cuda".to_owned()));
        assert!(names.contains(&"r4-0".to_owned()));
        for environment in system_environments() {
            assert_eq!(system_environment(&environment.name()), Some(environment));
            assert_eq!(
                language_of_environment("environment", &environment.name()),
                Ok(environment.language)
            );
        }
        assert_eq!(
            system_environment("python3-8").map(|e| e.display_name),
            Some("Python 3.8")
        );
    }

    #[test]
    fn language_names_are_accepted_as_environments() {
        assert_eq!(
            language_of_environment("environment", "python3.10_cuda"),
            Ok("python3.10_cuda")
        );
        for bad in ["", "python3-6", "ubuntu22-04-python3-10", "Python3-8"] {
            let error = language_of_environment("environment_name", bad).unwrap_err();
            assert!(
                error.message().starts_with("Unknown environment_name"),
                "{bad}: {error}"
            );
            assert!(error.message().contains("python3-7, "), "{error}");
        }
        assert_eq!(system_environment("python3.8"), None);
    }
}
