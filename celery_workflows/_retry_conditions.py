"""Retry conditions of ``celery_workflows.retry_policy``: which errors are worth a retry."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Protocol


class RetryCondition(Protocol):
    """A predicate saying whether an exception should be retried."""

    def __call__(self, error: BaseException) -> bool:
        """Return ``True`` to retry after ``error``."""
        ...


class _Condition:
    """Shared operators for retry conditions: ``a & b`` needs both, ``a | b`` either."""

    def __call__(self, error: BaseException) -> bool:
        raise NotImplementedError

    def __and__(self, other: RetryCondition) -> retry_all:
        return retry_all(self, other)

    def __rand__(self, other: RetryCondition) -> retry_all:
        return retry_all(other, self)

    def __or__(self, other: RetryCondition) -> retry_any:
        return retry_any(self, other)

    def __ror__(self, other: RetryCondition) -> retry_any:
        return retry_any(other, self)


class retry_if_exception(_Condition):
    """Retry when ``predicate(error)`` is true, for decisions no other helper covers."""

    def __init__(self, predicate: Callable[[BaseException], bool]) -> None:
        self.predicate = predicate

    def __call__(self, error: BaseException) -> bool:
        return self.predicate(error)


class retry_if_exception_type(retry_if_exception):
    """Retry when the error is an instance of ``exception_types`` (default: any Exception)."""

    def __init__(
        self, exception_types: type[BaseException] | tuple[type[BaseException], ...] = Exception
    ) -> None:
        self.exception_types = exception_types
        super().__init__(lambda error: isinstance(error, exception_types))


class retry_if_not_exception_type(retry_if_exception):
    """Retry unless the error is an instance of ``exception_types``."""

    def __init__(
        self, exception_types: type[BaseException] | tuple[type[BaseException], ...] = Exception
    ) -> None:
        self.exception_types = exception_types
        super().__init__(lambda error: not isinstance(error, exception_types))


class retry_unless_exception_type(retry_if_not_exception_type):
    """Same as :class:`retry_if_not_exception_type`, under tenacity's name."""


class retry_if_exception_message(_Condition):
    """Retry when ``str(error)`` equals ``message`` or matches the regex ``match``.

    Exactly one of the two must be given; ``match`` is searched anywhere in the message.
    """

    def __init__(
        self,
        message: str | None = None,
        match: str | re.Pattern[str] | None = None,
    ) -> None:
        if message is None and match is None:
            raise TypeError(
                "retry_if_exception_message() missing 1 required argument 'message' or 'match'"
            )
        if message is not None and match is not None:
            raise TypeError(
                "retry_if_exception_message() takes either 'message' or 'match', not both"
            )
        self.message = message
        self.match = match
        self._regex = re.compile(match) if isinstance(match, str) else match

    def __call__(self, error: BaseException) -> bool:
        text = str(error)
        if self.message is not None:
            return text == self.message
        return self._regex is not None and self._regex.search(text) is not None


class retry_if_not_exception_message(retry_if_exception_message):
    """Retry unless ``str(error)`` equals ``message`` or matches the regex ``match``."""

    def __call__(self, error: BaseException) -> bool:
        return not super().__call__(error)


class retry_if_exception_cause_type(_Condition):
    """Retry when an exception in the ``raise ... from`` chain is of ``exception_types``.

    Only ``__cause__`` links are followed (the error itself and ``__context__`` are not
    inspected), as in tenacity.
    """

    def __init__(
        self, exception_types: type[BaseException] | tuple[type[BaseException], ...] = Exception
    ) -> None:
        self.exception_types = exception_types

    def __call__(self, error: BaseException) -> bool:
        cause = error.__cause__
        while cause is not None:
            if isinstance(cause, self.exception_types):
                return True
            cause = cause.__cause__
        return False


class retry_any(_Condition):
    """Retry when at least one of ``retries`` says so; the named form of ``a | b``."""

    def __init__(self, *retries: RetryCondition) -> None:
        self.retries = retries

    def __call__(self, error: BaseException) -> bool:
        return any(condition(error) for condition in self.retries)


class retry_all(_Condition):
    """Retry only when every one of ``retries`` says so; the named form of ``a & b``."""

    def __init__(self, *retries: RetryCondition) -> None:
        self.retries = retries

    def __call__(self, error: BaseException) -> bool:
        return all(condition(error) for condition in self.retries)


class retry_always(_Condition):
    """Retry every error."""

    def __call__(self, error: BaseException) -> bool:
        return True


class retry_never(_Condition):
    """Retry no error."""

    def __call__(self, error: BaseException) -> bool:
        return False
