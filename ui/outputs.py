"""Named outputs: a handler returns / yields {output name: value}; ``Outputs`` maps the names to
the components and keeps the order the API reports them in."""

from __future__ import annotations

import functools
import inspect

from .session import prune_session


class Outputs:
    """Output name -> component, in the order the API reports them.

    outs = Outputs(status=status_box, answer=answer_box)
    btn.click(outs.bind(handler), inputs, outs.list)
    """

    def __init__(self, demo=None, **components):
        self.demo = demo
        self.by_name = dict(components)

    @property
    def names(self) -> list[str]:
        return list(self.by_name)

    @property
    def list(self) -> list:
        return list(self.by_name.values())

    def components(self, named: dict) -> dict:
        unknown = set(named) - set(self.by_name)
        if unknown:
            raise KeyError(f"handler returned unknown outputs {sorted(unknown)}")
        return {self.by_name[k]: v for k, v in named.items()}

    def bind(self, fn):
        """``fn`` returns / yields {name: value}; the result returns / yields {component: value}.
        Prunes the visitor's session first (see ``session.prune_session``)."""
        sig = inspect.signature(fn)
        demo = self.demo

        def request_of(args, kw):
            try:
                return sig.bind_partial(*args, **kw).arguments.get("request")
            except TypeError:
                return None

        if inspect.isgeneratorfunction(fn):

            @functools.wraps(fn)
            def gen(*args, **kw):
                prune_session(demo, request_of(args, kw))
                for named in fn(*args, **kw):
                    yield self.components(named)

            return gen

        @functools.wraps(fn)
        def plain(*args, **kw):
            prune_session(demo, request_of(args, kw))
            return self.components(fn(*args, **kw))

        return plain
