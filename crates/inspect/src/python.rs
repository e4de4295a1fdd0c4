//! Checking `deployment.py` with a real Python parser.

use std::path::Path;
use std::thread;

use ruff_python_ast::{Expr, Stmt, StmtClassDef};

use crate::source::read_source;
use crate::text::line_of;
use crate::BuildFailure;

/// Which entry points the `Deployment` class offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Methods {
    pub(crate) has_request: bool,
    pub(crate) has_requests: bool,
}

/// Deeper nesting of `{` than this is refused before parsing: the parser takes
/// quadratic time on nested f-strings, and CPython itself rejects anything
/// past 200 levels of brackets, so no working deployment comes close.
const MAX_BRACE_DEPTH: usize = 1000;

/// The parser grows its own stack while parsing, but dropping a deeply nested
/// tree recurses on the ordinary stack; the parse runs on a thread whose stack
/// covers the deepest tree the size-capped source can produce (one level per
/// byte at worst, as in `------1`), with a wide margin over the stack a level
/// was measured to take. Untouched stack pages cost no memory.
const PARSER_STACK_BASE: usize = 64 * 1024 * 1024;
const PARSER_STACK_PER_SOURCE_BYTE: usize = 256;

pub(crate) fn check_deployment(path: &Path, shown: &str) -> Result<Methods, BuildFailure> {
    let source = read_source(path, shown)?;
    check_brace_depth(&source, shown)?;

    let stack_size = PARSER_STACK_BASE + source.len().saturating_mul(PARSER_STACK_PER_SOURCE_BYTE);
    let shown_owned = shown.to_string();
    let worker = thread::Builder::new()
        .name("inspect-python".into())
        .stack_size(stack_size)
        .spawn(move || check_source(&source, &shown_owned))
        .map_err(|err| {
            BuildFailure::new(format!(
                "Could not check {shown}: no thread for the parser ({err})"
            ))
        })?;
    // A panic in the parser must fail this build, not the worker process.
    worker.join().unwrap_or_else(|_| {
        Err(BuildFailure::new(format!(
            "Could not check {shown}: the Python parser failed unexpectedly"
        )))
    })
}

fn check_source(source: &str, shown: &str) -> Result<Methods, BuildFailure> {
    let parsed = ruff_python_parser::parse_module(source).map_err(|err| {
        let line = line_of(source, usize::from(err.location.start()));
        BuildFailure::new(format!("{shown} line {line}: {}", err.error))
    })?;

    // Python binds the name to the last definition, so the last one counts.
    let class = parsed.suite().iter().rev().find_map(|stmt| match stmt {
        Stmt::ClassDef(class) if class.name.as_str() == "Deployment" => Some(class),
        _ => None,
    });
    let Some(class) = class else {
        return Err(BuildFailure::new(format!(
            "{shown}: no class named Deployment"
        )));
    };
    check_class(class, source, shown)
}

fn check_class(class: &StmtClassDef, source: &str, shown: &str) -> Result<Methods, BuildFailure> {
    let class_line = line_of(source, usize::from(class.name.range.start()));
    let mut has_init = false;
    let mut methods = Methods {
        has_request: false,
        has_requests: false,
    };

    for stmt in &class.body {
        match stmt {
            Stmt::FunctionDef(function) => {
                let name = function.name.as_str();
                if name == "__init__" {
                    if function.is_async {
                        // Python calls __init__ synchronously; an async one
                        // returns a coroutine and instantiation fails.
                        let line = line_of(source, usize::from(function.name.range.start()));
                        return Err(BuildFailure::new(format!(
                            "{shown} line {line}: __init__ of class Deployment must not be async"
                        )));
                    }
                    has_init = true;
                }
                note_method(name, &mut methods);
            }
            // `request = _handle` in the class body defines a method too.
            Stmt::Assign(assign) => {
                for target in &assign.targets {
                    if let Expr::Name(target) = target {
                        if target.id.as_str() == "__init__" {
                            has_init = true;
                        }
                        note_method(target.id.as_str(), &mut methods);
                    }
                }
            }
            Stmt::AnnAssign(assign) if assign.value.is_some() => {
                if let Expr::Name(target) = assign.target.as_ref() {
                    if target.id.as_str() == "__init__" {
                        has_init = true;
                    }
                    note_method(target.id.as_str(), &mut methods);
                }
            }
            _ => {}
        }
    }

    if !has_init {
        return Err(BuildFailure::new(format!(
            "{shown} line {class_line}: class Deployment has no __init__ method"
        )));
    }
    if !methods.has_request && !methods.has_requests {
        return Err(BuildFailure::new(format!(
            "{shown} line {class_line}: class Deployment needs a request or requests method"
        )));
    }
    Ok(methods)
}

fn note_method(name: &str, methods: &mut Methods) {
    match name {
        "request" => methods.has_request = true,
        "requests" => methods.has_requests = true,
        _ => {}
    }
}

/// A plain count of `{` against `}`, strings and comments included: cheap,
/// and only wrong for sources far outside what CPython accepts anyway.
fn check_brace_depth(source: &str, shown: &str) -> Result<(), BuildFailure> {
    let mut depth = 0usize;
    for (offset, byte) in source.bytes().enumerate() {
        match byte {
            b'{' => {
                depth += 1;
                if depth > MAX_BRACE_DEPTH {
                    let line = line_of(source, offset);
                    return Err(BuildFailure::new(format!(
                        "{shown} line {line}: braces are nested more than {MAX_BRACE_DEPTH} levels deep"
                    )));
                }
            }
            b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(source: &str) -> Result<Methods, String> {
        check_source(source, "deployment.py").map_err(|f| f.message().to_string())
    }

    const INIT: &str = "    def __init__(self, base_directory, context):\n        pass\n";

    #[test]
    fn request_and_requests_combinations() {
        let both = format!(
            "class Deployment:\n{INIT}    def request(self, data):\n        return data\n    def requests(self, data):\n        return data\n"
        );
        assert_eq!(
            check(&both),
            Ok(Methods {
                has_request: true,
                has_requests: true
            })
        );

        let only_request =
            format!("class Deployment:\n{INIT}    def request(self, data):\n        return data\n");
        assert_eq!(
            check(&only_request),
            Ok(Methods {
                has_request: true,
                has_requests: false
            })
        );

        let only_async_requests = format!(
            "class Deployment:\n{INIT}    async def requests(self, data):\n        return data\n"
        );
        assert_eq!(
            check(&only_async_requests),
            Ok(Methods {
                has_request: false,
                has_requests: true
            })
        );

        let async_request = format!(
            "class Deployment:\n{INIT}    async def request(self, data):\n        return data\n"
        );
        assert_eq!(
            check(&async_request),
            Ok(Methods {
                has_request: true,
                has_requests: false
            })
        );

        let assigned = format!(
            "def handle(self, data):\n    return data\n\nclass Deployment:\n{INIT}    request = handle\n"
        );
        assert_eq!(
            check(&assigned),
            Ok(Methods {
                has_request: true,
                has_requests: false
            })
        );
    }

    #[test]
    fn decorated_and_derived_classes_are_found() {
        let source = format!(
            "import functools\n\n@functools.total_ordering\nclass Deployment(object):\n{INIT}    @staticmethod\n    def request(data):\n        return data\n"
        );
        assert_eq!(
            check(&source),
            Ok(Methods {
                has_request: true,
                has_requests: false
            })
        );
    }

    #[test]
    fn last_definition_wins() {
        let source = format!(
            "class Deployment:\n{INIT}    def request(self, d):\n        pass\n\nclass Deployment:\n    pass\n"
        );
        assert_eq!(
            check(&source).unwrap_err(),
            "deployment.py line 7: class Deployment has no __init__ method"
        );
    }

    #[test]
    fn missing_parts_are_reported_with_lines() {
        assert_eq!(
            check("import os\n\nclass Model:\n    pass\n").unwrap_err(),
            "deployment.py: no class named Deployment"
        );
        assert_eq!(
            check("\n\nclass Deployment:\n    def request(self, data):\n        pass\n")
                .unwrap_err(),
            "deployment.py line 3: class Deployment has no __init__ method"
        );
        assert_eq!(
            check(&format!(
                "# model\nclass Deployment:\n{INIT}    def predict(self, d):\n        pass\n"
            ))
            .unwrap_err(),
            "deployment.py line 2: class Deployment needs a request or requests method"
        );
        assert_eq!(
            check("class Deployment:\n    async def __init__(self, a, b):\n        pass\n    def request(self, d):\n        pass\n")
                .unwrap_err(),
            "deployment.py line 2: __init__ of class Deployment must not be async"
        );
    }

    #[test]
    fn nested_classes_do_not_count() {
        let source = "def factory():\n    class Deployment:\n        def __init__(self, a, b):\n            pass\n        def request(self, d):\n            pass\n    return Deployment\n";
        assert_eq!(
            check(source).unwrap_err(),
            "deployment.py: no class named Deployment"
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err =
            check("import os\n\nclass Deployment:\n    def __init__(self, a, b)\n        pass\n")
                .unwrap_err();
        assert!(err.starts_with("deployment.py line 4: "), "{err}");

        let err = check("x = 1\r\ny = 2\r\nprint 'hello'\r\n").unwrap_err();
        assert!(err.starts_with("deployment.py line 3: "), "{err}");

        let err = check("if True:\n        x = 1\n    y = 2\n").unwrap_err();
        assert!(err.starts_with("deployment.py line 3: "), "{err}");
    }

    #[test]
    fn modern_syntax_is_accepted() {
        let source = format!(
            "type Pair[T] = tuple[T, T]\n\ndef first[T](p: Pair[T]) -> T:\n    return p[0]\n\n\
             class Deployment:\n{INIT}    def request(self, data):\n        match data:\n            case {{\"a\": x}}:\n                return f\"{{f\"{{x}}\"}}\"\n            case _:\n                return data\n"
        );
        assert_eq!(
            check(&source),
            Ok(Methods {
                has_request: true,
                has_requests: false
            })
        );
    }

    #[test]
    fn deep_braces_are_refused_before_parsing() {
        let source = format!(
            "x = {}1{}\n",
            "f'{".repeat(MAX_BRACE_DEPTH + 1),
            "}'".repeat(MAX_BRACE_DEPTH + 1)
        );
        let err = check_brace_depth(&source, "deployment.py").unwrap_err();
        assert!(
            err.message().contains("nested more than 1000 levels"),
            "{}",
            err.message()
        );
    }

    #[test]
    fn mangled_sources_fail_cleanly() {
        let original = format!(
            "import os\n\nclass Deployment:\n{INIT}    async def request(self, data):\n        return f\"{{data!r:>10}}\" if data else [x for x in (1, 2)]\n"
        );
        let bytes = original.as_bytes();
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..2000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let cut = (state as usize) % bytes.len();
            let insert = ["(", "{", "'", "\"\"\"", ":", "\n", "\t", "\\", "f'{", "\r"]
                [(state >> 32) as usize % 10];
            let mutated = format!(
                "{}{insert}{}",
                String::from_utf8_lossy(&bytes[..cut]),
                String::from_utf8_lossy(&bytes[cut..])
            );
            // Either outcome is fine; it must not panic.
            let _ = check_source(&mutated, "deployment.py");
        }
    }
}
