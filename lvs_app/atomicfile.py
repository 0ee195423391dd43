"""Small files that survive a crash: the rules file and its ids file.

A file is rewritten by writing a temporary file beside it, fsyncing it,
renaming it over the old name and fsyncing the directory, so that after a
crash or power loss the name holds either the old or the new content, whole.
Optionally the old content is kept as ``FILE.prev`` (a hard link to the old
file, made before the rename, so that FILE itself never goes missing).

Temporaries are named ``.lvs-KIND-NAME.XXXXXXXX`` after the file they belong
to, so that the start-up clean-up (:func:`remove_stale_temporaries`) removes
only what a killed writer of *this* file left, never the temporaries of
another controller writing another file in the same directory.

Stdlib only.
"""

import errno
import logging
import os
import re
import shutil
import tempfile

LOG = logging.getLogger(__name__)

PREVIOUS_SUFFIX = ".prev"

# mkstemp's random part: 8 characters of this alphabet
_RANDOM = r"[a-z0-9_]{8}"


def _prefix(path, kind):
    return f".lvs-{kind}-{os.path.basename(path)}."


def previous_path(path):
    """Where the version before the last rewrite of ``path`` is kept."""
    return path + PREVIOUS_SUFFIX


def _fsync_directory(directory):
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.ENOTSUP):  # no directory fsync here
            raise
    finally:
        os.close(fd)


def _keep_previous(path, directory, prefix):
    """Make ``FILE.prev`` another name of the current FILE (copy where links fail)."""
    if not os.path.exists(path):
        return
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=directory)
    os.close(fd)
    try:
        os.unlink(tmp)
        try:
            os.link(path, tmp)
        except OSError:                     # a file system without hard links
            shutil.copyfile(path, tmp)
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, previous_path(path))
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _unlink_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def write_atomic(path, text, kind, keep_previous=False):
    """Replace ``path`` by ``text`` (UTF-8), durably; raises OSError.

    ``kind`` names the temporaries (``.lvs-KIND-...``); with ``keep_previous``
    the content being replaced stays in ``FILE.prev``.
    """
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    prefix = _prefix(path, kind)
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if keep_previous:
            _keep_previous(path, directory, prefix)
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    _fsync_directory(directory)


def remove_stale_temporaries(path, kind):
    """Remove the temporaries a killed writer of ``path`` left beside it.

    Also removes the older unnamed form ``.lvs-KIND-XXXXXXXX``.  Returns the
    names removed; failures are logged, never raised (this runs at start-up).
    """
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    pattern = re.compile(rf"(?:{re.escape(_prefix(path, kind))}|\.lvs-{re.escape(kind)}-)"
                         rf"{_RANDOM}\Z")
    try:
        names = os.listdir(directory)
    except OSError as err:
        LOG.warning("cannot look for stale temporaries of %s: %s", path, err.strerror)
        return []
    removed = []
    for name in sorted(names):
        if pattern.match(name):
            try:
                os.unlink(os.path.join(directory, name))
            except OSError as err:
                LOG.warning("stale temporary %s not removed: %s",
                            os.path.join(directory, name), err.strerror)
                continue
            LOG.warning("removed %s, left by an interrupted write of %s",
                        os.path.join(directory, name), path)
            removed.append(name)
    return removed
