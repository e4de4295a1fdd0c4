//! Stage 2: finding and checking the deployment code, through real zips.

mod common;

use std::fs;
use std::path::PathBuf;

use common::{deployment_py, file, make_zip, Entry, REQUEST};
use ubiops_inspect::{extract, inspect, validate, Language, Limits, Validation};

/// Zips `entries`, extracts them and validates the result.
fn check(language: Language, entries: &[Entry<'_>]) -> Result<Validation, String> {
    let tmp = tempfile::tempdir().unwrap();
    let zip = make_zip(tmp.path(), "deployment.zip", entries);
    inspect(&zip, &tmp.path().join("work"), language, &Limits::default())
        .map_err(|f| f.message().to_string())
}

fn python(entries: &[Entry<'_>]) -> Result<Validation, String> {
    check(Language::Python, entries)
}

#[test]
fn python_deployment_at_the_root() {
    let v = python(&[
        file("deployment.py", deployment_py(REQUEST)),
        file("requirements.txt", "numpy==1.26.4\n# comment\npandas>=2\n"),
        file("helpers/util.py", "def f():\n    return 1\n"),
    ])
    .unwrap();
    assert_eq!(
        v,
        Validation {
            deployment_file: PathBuf::from("deployment.py"),
            has_request_method: true,
            has_requests_method: false,
            requirements: vec!["numpy==1.26.4".into(), "pandas>=2".into()],
        }
    );
}

#[test]
fn python_deployment_in_one_folder_with_macos_noise() {
    let methods = format!("{REQUEST}\n    async def requests(self, data):\n        return data\n");
    let v = python(&[
        Entry::Dir("my_model/"),
        file("my_model/deployment.py", deployment_py(&methods)),
        file("my_model/requirements.txt", "scikit-learn~=1.4\n"),
        Entry::Dir("__MACOSX/"),
        file("__MACOSX/my_model/._deployment.py", [0u8, 5, 22, 7]),
        file("__MACOSX/deployment.py", "not python at all ((("),
        file(".DS_Store", [0u8; 16]),
        file("README.md", "# my model\n"),
    ])
    .unwrap();
    assert_eq!(v.deployment_file, PathBuf::from("my_model/deployment.py"));
    assert!(v.has_request_method && v.has_requests_method);
    assert_eq!(v.requirements, vec!["scikit-learn~=1.4"]);
}

#[test]
fn requests_only_is_enough() {
    let v = python(&[file(
        "deployment.py",
        deployment_py("    def requests(self, data):\n        return data\n"),
    )])
    .unwrap();
    assert!(!v.has_request_method && v.has_requests_method);
}

#[test]
fn root_file_wins_over_folders() {
    let v = python(&[
        file("deployment.py", deployment_py(REQUEST)),
        file("old/deployment.py", "this would not parse ("),
    ])
    .unwrap();
    assert_eq!(v.deployment_file, PathBuf::from("deployment.py"));
}

#[test]
fn several_folders_are_ambiguous() {
    let err = python(&[
        file("b_model/deployment.py", deployment_py(REQUEST)),
        file("a_model/deployment.py", deployment_py(REQUEST)),
    ])
    .unwrap_err();
    assert_eq!(
        err,
        "Found deployment.py in several top-level folders ('a_model', 'b_model'): put exactly one deployment in the zip"
    );
}

#[test]
fn one_folder_with_the_file_among_others_is_fine() {
    let v = python(&[
        file("model/deployment.py", deployment_py(REQUEST)),
        file("data/x.csv", "a,b\n"),
    ])
    .unwrap();
    assert_eq!(v.deployment_file, PathBuf::from("model/deployment.py"));
}

#[test]
fn missing_deployment_file() {
    let expected = "Could not find the deployment file: put deployment.py at the root of the zip or inside a single top-level folder";
    assert_eq!(python(&[file("main.py", "x = 1\n")]).unwrap_err(), expected);
    // A macOS copy alone does not count.
    assert_eq!(
        python(&[file("__MACOSX/deployment.py", deployment_py(REQUEST))]).unwrap_err(),
        expected
    );
    assert_eq!(
        python(&[file("a/b/deployment.py", deployment_py(REQUEST))]).unwrap_err(),
        format!("{expected} ('a/b/deployment.py' is too deeply nested)")
    );
    assert_eq!(
        python(&[file("model/Deployment.py", deployment_py(REQUEST))]).unwrap_err(),
        format!("{expected} (found 'model/Deployment.py'; the name is case-sensitive)")
    );
}

#[test]
fn syntax_error_reports_path_and_line() {
    let source = "import os\n\n\nclass Deployment:\n    def __init__(self, base_directory, context)\n        pass\n";
    let err = python(&[file("my_model/deployment.py", source)]).unwrap_err();
    assert!(err.starts_with("my_model/deployment.py line 5: "), "{err}");
}

#[test]
fn missing_class_init_or_methods() {
    assert_eq!(
        python(&[file(
            "deployment.py",
            "def request(data):\n    return data\n"
        )])
        .unwrap_err(),
        "deployment.py: no class named Deployment"
    );
    assert_eq!(
        python(&[file(
            "m/deployment.py",
            "import os\n\nclass Deployment:\n    def request(self, d):\n        pass\n"
        )])
        .unwrap_err(),
        "m/deployment.py line 3: class Deployment has no __init__ method"
    );
    assert_eq!(
        python(&[file(
            "deployment.py",
            deployment_py("    def predict(self, d):\n        pass\n")
        )])
        .unwrap_err(),
        "deployment.py line 4: class Deployment needs a request or requests method"
    );
}

#[test]
fn non_utf8_source_is_refused() {
    let mut source = deployment_py(REQUEST).into_bytes();
    source.extend_from_slice(b"# caf\xe9\n");
    let err = python(&[file("deployment.py", source)]).unwrap_err();
    assert_eq!(
        err,
        "deployment.py line 10: the file is not valid UTF-8 text; save it with UTF-8 encoding"
    );
}

#[test]
fn utf8_bom_and_crlf_are_fine() {
    let source = format!("\u{feff}{}", deployment_py(REQUEST).replace('\n', "\r\n"));
    assert!(python(&[file("deployment.py", source)]).is_ok());
}

#[test]
fn oversized_source_is_refused() {
    let source = format!("{}\n{}", deployment_py(REQUEST), "#".repeat(1 << 20));
    let err = python(&[file("deployment.py", source)]).unwrap_err();
    assert_eq!(
        err,
        "deployment.py is larger than 1 MiB; keep data and models in separate files"
    );
}

#[test]
fn pathological_nesting_does_not_crash() {
    // About a million levels of nesting, just under the size cap: CPython
    // refuses this, and the check must fail or pass without overflowing.
    let prefix = deployment_py(REQUEST);
    let room = (1 << 20) - prefix.len() - 10;
    for body in [
        format!("x = {}1\n", "-".repeat(room)),
        format!("x = {}1\n", "not ".repeat(room / 4)),
    ] {
        let result = python(&[file("deployment.py", format!("{prefix}{body}"))]);
        assert!(
            result.is_ok(),
            "{:?}",
            result.map_err(|e| e.chars().take(200).collect::<String>())
        );
    }
}

#[test]
fn invalid_requirements_name_the_file_and_line() {
    let err = python(&[
        file("model/deployment.py", deployment_py(REQUEST)),
        file(
            "model/requirements.txt",
            "numpy\n\n# ok so far\ntensorflow==2.15.*\nnot a package!\n",
        ),
    ])
    .unwrap_err();
    assert!(
        err.starts_with(
            "model/requirements.txt line 5: 'not a package!' is not a valid requirement"
        ),
        "{err}"
    );

    let err = python(&[
        file("deployment.py", deployment_py(REQUEST)),
        file("requirements.txt", "-r base.txt\n"),
    ])
    .unwrap_err();
    assert!(
        err.starts_with("requirements.txt line 1: '-r base.txt' is not supported"),
        "{err}"
    );
}

#[test]
fn requirements_elsewhere_are_ignored() {
    let v = python(&[
        file("model/deployment.py", deployment_py(REQUEST)),
        file("requirements.txt", "this is not read\n"),
    ])
    .unwrap();
    assert!(v.requirements.is_empty());
}

const R_SOURCE: &str = "init <- function(base_directory, context) {\n  print('loading')\n}\n\nrequest <- function(input_data, base_directory, context) {\n  list(output = input_data)\n}\n";

#[test]
fn r_deployment_ok() {
    let v = check(
        Language::R,
        &[
            file("r_model/deployment.R", R_SOURCE),
            Entry::Dir("__MACOSX/"),
        ],
    )
    .unwrap();
    assert_eq!(
        v,
        Validation {
            deployment_file: PathBuf::from("r_model/deployment.R"),
            has_request_method: true,
            has_requests_method: false,
            requirements: vec![],
        }
    );
}

#[test]
fn r_deployment_problems() {
    assert_eq!(
        check(Language::R, &[file("deployment.py", deployment_py(REQUEST))]).unwrap_err(),
        "Could not find the deployment file: put deployment.R at the root of the zip or inside a single top-level folder"
    );
    assert_eq!(
        check(Language::R, &[file("deployment.R", "  \n\n")]).unwrap_err(),
        "deployment.R is empty"
    );
    assert_eq!(
        check(
            Language::R,
            &[file(
                "deployment.R",
                "init <- function(a, b) {}\n# request <- function(x) x\n"
            )]
        )
        .unwrap_err(),
        "deployment.R: no request function found; define one as 'request <- function(...)'"
    );
    let err = check(
        Language::R,
        &[file("deployment.R", b"request <- function(x) \xff\n")],
    )
    .unwrap_err();
    assert!(err.contains("not valid UTF-8"), "{err}");
}

#[test]
fn stages_can_run_separately() {
    let tmp = tempfile::tempdir().unwrap();
    let zip = make_zip(
        tmp.path(),
        "d.zip",
        &[file("deployment.py", deployment_py(REQUEST))],
    );
    let dest = tmp.path().join("dest");
    let extracted = extract(&zip, &dest, &Limits::default()).unwrap();
    assert_eq!(extracted.files, 1);
    let v = validate(&dest, Language::Python).unwrap();
    assert_eq!(v.deployment_file, PathBuf::from("deployment.py"));
    // The extracted tree stays for the caller to use or remove.
    assert!(fs::metadata(dest.join("deployment.py")).unwrap().is_file());
}
