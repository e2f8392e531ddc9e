"""Domain errors that carry a catalog key, so each surface can say them in the person's language."""

from __future__ import annotations

from config.i18n import t
from config.languages import Language


class RegistryError(Exception):
    """A rule of the registry refused an action. ``key`` names the message in the catalogs."""

    def __init__(self, key: str, /, **params: object) -> None:
        self.key = key
        self.params = params
        super().__init__(self.render(Language.EN))

    def render(self, language: Language) -> str:
        return t(language, self.key, **self.params)


class InvalidPhone(RegistryError):
    """The text is not a phone number that can be dialled in the default region."""


class UnknownZone(RegistryError):
    """The zone code is not in the authority's profile."""


class ConsentRequired(RegistryError):
    """An action needs a consent the person (or their guardian) has not given."""
