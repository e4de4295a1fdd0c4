"""Runs one instance of a deployment for the server that started it in a
sandbox: imports the package's deployment.py, constructs
Deployment(base_directory, context) and serves its requests one at a time.

The server and the runner talk in frames, each a 4-byte big-endian length
and that many bytes of UTF-8 JSON: the server's on the original stdin, the
runner's on the original stdout. Both are moved to private descriptors at
once; what the code prints goes to the server as log frames, in order with
the answers. Passed with -c, so nothing of it lies where the package's code
could change it first. Its one argument is the package directory.
"""
import codecs
import inspect
import json
import os
import struct
import sys
import threading
import traceback

HEADER = struct.Struct(">I")


class Channel:
    """The frames to and from the server."""

    def __init__(self):
        # Private copies of the original stdin and stdout, not inherited by
        # programs the code starts. Descriptors 0 and 1 then point elsewhere,
        # so nothing the code writes through them (a C library's printf, a
        # program it runs) can pass for a frame: it reaches the server as
        # lines on stderr.
        self.incoming = os.dup(0)
        self.unread = bytearray()
        self.outgoing = os.dup(1)
        os.set_inheritable(self.incoming, False)
        os.set_inheritable(self.outgoing, False)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.dup2(2, 1)
        # Threads of the code print too: a frame is written whole.
        self.lock = threading.Lock()
        # A process the code forks shares the descriptors but must not
        # write frames: its lines go to stderr.
        self.pid = os.getpid()
        os.register_at_fork(after_in_child=self.forked)
        # The server's figures, from its first frame.
        self.max_frame_bytes = None
        self.max_line_bytes = None
        self.max_depth = None

    def forked(self):
        self.lock = threading.Lock()

    def receive(self):
        """The server's next message, or None when it closed its end."""
        header = self.read(HEADER.size)
        if header is None:
            return None
        (length,) = HEADER.unpack(header)
        if self.max_frame_bytes is not None and length > self.max_frame_bytes:
            raise RuntimeError(f"the server sent a frame of {length} bytes")
        body = self.read(length)
        return None if body is None else json.loads(body)

    def read(self, count):
        # Reads ahead: a small frame, header and body, takes one system call.
        while len(self.unread) < count:
            chunk = os.read(self.incoming, min(max(count - len(self.unread), 1 << 16), 1 << 20))
            if not chunk:
                return None
            self.unread += chunk
        with memoryview(self.unread) as unread:
            data = bytes(unread[:count])
        del self.unread[:count]
        return data

    def send(self, message):
        self.send_encoded(json.dumps(message, ensure_ascii=False).encode("utf-8"))

    def send_encoded(self, body):
        if os.getpid() != self.pid:
            # A process the code forked returned into the runner: the
            # answer is its parent's.
            os._exit(0)
        with self.lock:
            # One write: the server wakes once for a small frame.
            self.write(HEADER.pack(len(body)) + body)

    def write(self, data):
        view = memoryview(data)
        while view:
            view = view[os.write(self.outgoing, view):]

    def log(self, level, line):
        """One line of output, cut into pieces of at most max_line_bytes."""
        data = line.encode("utf-8", "replace")
        if os.getpid() != self.pid:
            os.write(2, data + b"\n")
            return
        while True:
            cut = len(data)
            if cut > self.max_line_bytes:
                cut = self.max_line_bytes
                # Not inside a character.
                while cut > 0 and data[cut] & 0xC0 == 0x80:
                    cut -= 1
            piece, data = data[:cut], data[cut:]
            self.send({"type": "log", "level": level, "text": piece.decode("utf-8")})
            if not data:
                return


class Output:
    """What the code gets as sys.stdout or sys.stderr: each complete line
    goes to the server as a log line of `level`. The server tags it with the
    request in flight, which the answer, sent after it, ends."""

    encoding = "utf-8"
    errors = "replace"
    newlines = None
    line_buffering = True
    closed = False

    def __init__(self, channel, level, fd):
        self.channel = channel
        self.level = level
        self.fd = fd
        self.name = "<stdout>" if fd == 1 else "<stderr>"
        self.buffer = Bytes(self)
        self.pending = ""
        self.lock = threading.Lock()
        os.register_at_fork(after_in_child=self.forked)

    def forked(self):
        # The parent's unfinished line is the parent's to send.
        self.pending = ""
        self.lock = threading.Lock()

    def write(self, text):
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        with self.lock:
            self.pending += text
            *lines, self.pending = self.pending.split("\n")
            for line in lines:
                self.channel.log(self.level, line[:-1] if line.endswith("\r") else line)
            # A program that never ends a line still has it delivered.
            while len(self.pending.encode("utf-8", "replace")) >= self.channel.max_line_bytes:
                data = self.pending.encode("utf-8", "replace")
                cut = self.channel.max_line_bytes
                while cut > 0 and data[cut] & 0xC0 == 0x80:
                    cut -= 1
                self.channel.log(self.level, data[:cut].decode("utf-8"))
                self.pending = data[cut:].decode("utf-8")
        return len(text)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def finish(self):
        """Sends the unfinished line: before an answer, so it is not lost or
        tagged with the next request."""
        with self.lock:
            if self.pending:
                self.channel.log(self.level, self.pending)
                self.pending = ""

    def flush(self):
        pass

    def close(self):
        # The code's output goes on for as long as the instance lives.
        pass

    def reconfigure(self, **options):
        pass

    def fileno(self):
        # Those writing to the descriptor itself (faulthandler, a program
        # given sys.stdout) reach the server's stderr lines.
        return self.fd

    def isatty(self):
        return False

    def readable(self):
        return False

    def writable(self):
        return True

    def seekable(self):
        return False


class Bytes:
    """sys.stdout.buffer and sys.stderr.buffer, for code that writes bytes."""

    def __init__(self, text):
        self.text = text
        # A character may come in two writes.
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def write(self, data):
        self.text.write(self.decoder.decode(bytes(data)))
        return len(data)

    def flush(self):
        pass

    def fileno(self):
        return self.text.fileno()

    def isatty(self):
        return False

    def writable(self):
        return True


def describe(error):
    """"Type: message", as the last line of a traceback says it."""
    # A SyntaxError's place comes first, indented; notes come after.
    lines = traceback.format_exception_only(type(error), error)
    line = next((line for line in lines if not line.startswith(" ")), type(error).__name__)
    return line.strip()


def own_traceback(error):
    """The traceback without the runner's own frames above the code's."""
    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_globals is globals():
        tb = tb.tb_next
    return tb


def log_traceback(channel, error):
    text = "".join(traceback.format_exception(type(error), error, own_traceback(error)))
    for line in text.rstrip("\n").split("\n"):
        channel.log("error", line)


def where(error, package):
    """The innermost frame of the error in the package's own files."""
    frames = traceback.extract_tb(own_traceback(error))
    own = [f for f in frames if os.path.abspath(f.filename).startswith(package + os.sep)]
    if isinstance(error, SyntaxError) and error.filename and error.lineno:
        name, line = error.filename, error.lineno
    elif own or frames:
        name, line = (own or frames)[-1].filename, (own or frames)[-1].lineno
    else:
        return None, None
    if os.path.abspath(name).startswith(package + os.sep):
        name = os.path.relpath(os.path.abspath(name), package)
    return name, line


def takes_context(method):
    """Whether request/requests take a context after the data: old packages
    define request(self, data)."""
    try:
        parameters = list(inspect.signature(method).parameters.values())
    except (TypeError, ValueError):
        return True
    positional = [
        p
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    return len(positional) >= 2 or any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in parameters)


class Method:
    def __init__(self, deployment, name):
        method = getattr(deployment, name, None)
        self.name = name
        self.method = method if callable(method) else None
        self.with_context = self.method is not None and takes_context(self.method)

    def __bool__(self):
        return self.method is not None

    def __call__(self, data, context):
        if self.with_context:
            return self.method(data, context)
        return self.method(data)


class Raised(Exception):
    """A call fails with this message and no traceback of its own."""


def outputs_of_requests(outputs, count):
    if isinstance(outputs, tuple):
        outputs = list(outputs)
    if not isinstance(outputs, list):
        raise Raised(
            f"requests() returned {type(outputs).__name__}, not a list with one output per request"
        )
    if len(outputs) != count:
        raise Raised(f"requests() returned {len(outputs)} outputs for {count} requests")
    return outputs


def invoke(request, requests, data, many, context):
    """Runs one call. Without requests(), a batch is request() per item;
    without request(), one request is requests([data]) and the one output."""
    if many:
        if requests:
            return outputs_of_requests(requests(data, context), len(data)), "requests"
        return [request(item, context) for item in data], "request"
    if request:
        return request(data, context), "request"
    return outputs_of_requests(requests([data], context), 1)[0], "requests"


def too_deep(value, limit):
    """Whether lists and objects nest deeper than the server reads."""
    stack = [(value, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(value, dict):
            stack.extend((item, depth + 1) for item in value.values() if isinstance(item, (dict, list, tuple)))
        elif isinstance(value, (list, tuple)):
            stack.extend((item, depth + 1) for item in value if isinstance(item, (dict, list, tuple)))
    return False


def answer(channel, message, request, requests):
    """The encoded answer frame for one call."""
    id = message["id"]
    try:
        output, method = invoke(request, requests, message["data"], message["many"], message["context"])
    except Raised as error:
        return encode_raised(channel, id, str(error))
    except Exception as error:
        log_traceback(channel, error)
        return encode_raised(channel, id, describe(error))
    try:
        body = json.dumps(
            {"type": "returned", "id": id, "output": output}, ensure_ascii=False, allow_nan=False
        ).encode("utf-8")
    except (TypeError, ValueError, RecursionError, UnicodeError) as error:
        return encode_raised(channel, id, f"the output of {method}() is not JSON serialisable: {describe(error)}")
    # Cheap first: deep nesting needs as many brackets.
    if body.count(b"[") + body.count(b"{") > channel.max_depth and too_deep(output, channel.max_depth):
        return encode_raised(
            channel,
            id,
            f"the output of {method}() nests lists and objects more than {channel.max_depth} levels deep",
        )
    if len(body) > channel.max_frame_bytes:
        return encode_raised(
            channel,
            id,
            f"the output of {method}() is {len(body) / (1 << 20):.1f} MiB of JSON, "
            f"more than the {channel.max_frame_bytes >> 20} MiB an instance may return",
        )
    return body


def encode_raised(channel, id, error):
    return json.dumps({"type": "raised", "id": id, "error": error}, ensure_ascii=False).encode("utf-8")


def start(channel, package, context, outputs):
    """The constructed Deployment, or None when it failed (and said so)."""

    def failed(stage, error, file=None, line=None):
        for output in outputs:
            output.finish()
        channel.send({"type": "failed", "stage": stage, "error": error, "file": file, "line": line})

    sys.path[:0] = [package, os.path.join(package, "libraries")]
    try:
        import deployment as module
    except BaseException as error:  # SystemExit and KeyboardInterrupt too
        log_traceback(channel, error)
        return failed("import", describe(error), *where(error, package))
    cls = getattr(module, "Deployment", None)
    if not inspect.isclass(cls):
        return failed("definition", "it defines no class named Deployment")
    try:
        deployment = cls(package, context)
    except BaseException as error:
        log_traceback(channel, error)
        return failed("init", describe(error), *where(error, package))
    request, requests = Method(deployment, "request"), Method(deployment, "requests")
    if not (request or requests):
        return failed("definition", "class Deployment has neither a request nor a requests method")
    for output in outputs:
        output.finish()
    channel.send({"type": "ready", "has_request": bool(request), "has_requests": bool(requests)})
    return request, requests


def main():
    channel = Channel()
    outputs = [Output(channel, "info", 1), Output(channel, "error", 2)]
    sys.stdout, sys.stderr = outputs
    try:
        begin = channel.receive()
        if begin is None:
            return
        channel.max_frame_bytes = begin["max_frame_bytes"]
        channel.max_line_bytes = begin["max_line_bytes"]
        channel.max_depth = begin["max_depth"]
        methods = start(channel, os.path.abspath(sys.argv[1]), begin["context"], outputs)
        if methods is None:
            return
        while True:
            message = channel.receive()
            if message is None:
                return
            body = answer(channel, message, *methods)
            for output in outputs:
                output.finish()
            channel.send_encoded(body)
    except BaseException as error:
        # The instance ends here (SystemExit or os._exit in the code end it
        # too). The server gives the last line on stderr as the reason.
        for output in outputs:
            try:
                output.finish()
            except BaseException:
                pass
        if not isinstance(error, SystemExit):
            text = "".join(traceback.format_exception(type(error), error, own_traceback(error)))
            os.write(2, text.encode("utf-8", "replace"))
        else:
            os.write(2, (describe(error) + "\n").encode("utf-8", "replace"))
        code = error.code if isinstance(error, SystemExit) else 1
        # Threads the code left running must not keep a dead instance alive.
        os._exit(code if isinstance(code, int) else 0 if code is None else 1)


main()
