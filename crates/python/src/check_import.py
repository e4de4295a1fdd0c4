"""Imports a deployment package's code the way an instance will, without
constructing it, and writes what it found as JSON to the file named by the
second argument. Run by the build in the package's environment, in a sandbox.
"""
import importlib.util
import inspect
import json
import os
import sys
import traceback


def where(error, directory):
    """The innermost frame of the error in the package's own files."""
    frames = traceback.extract_tb(error.__traceback__)
    own = [f for f in frames if os.path.abspath(f.filename).startswith(directory + os.sep)]
    frame = (own or frames or [None])[-1]
    if frame is None:
        return None, None
    name = frame.filename
    if os.path.abspath(name).startswith(directory + os.sep):
        name = os.path.relpath(name, directory)
    return name, frame.lineno


def check(deployment_file):
    directory = os.path.dirname(os.path.abspath(deployment_file))
    sys.path.insert(0, directory)
    os.chdir(directory)
    try:
        spec = importlib.util.spec_from_file_location("deployment", deployment_file)
        module = importlib.util.module_from_spec(spec)
        sys.modules["deployment"] = module
        spec.loader.exec_module(module)
    except BaseException as error:  # SystemExit and KeyboardInterrupt too
        name, line = where(error, directory)
        if isinstance(error, SyntaxError) and error.lineno:
            name, line = os.path.basename(error.filename or deployment_file), error.lineno
        text = "".join(traceback.format_exception_only(type(error), error)).strip().splitlines()
        return {"error": text[-1] if text else type(error).__name__, "file": name, "line": line}
    deployment = getattr(module, "Deployment", None)
    if not inspect.isclass(deployment):
        return {"definition": "it defines no class named Deployment"}
    if "__init__" not in vars(deployment) and not any(
        "__init__" in vars(base) for base in deployment.__mro__[1:-1]
    ):
        return {"definition": "class Deployment has no __init__ method"}
    has_request = callable(getattr(deployment, "request", None))
    has_requests = callable(getattr(deployment, "requests", None))
    if not (has_request or has_requests):
        return {"definition": "class Deployment has neither a request nor a requests method"}
    return {"has_request": has_request, "has_requests": has_requests}


def main():
    deployment_file, result_file = sys.argv[1], sys.argv[2]
    result = check(deployment_file)
    sys.stdout.flush()
    sys.stderr.flush()
    with open(result_file, "w") as out:
        json.dump(result, out)
    # Threads the code started must not keep the check waiting.
    os._exit(0)


main()
