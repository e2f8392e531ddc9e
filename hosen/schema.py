"""Import every package's models so that ``Base.metadata`` describes the whole schema."""

import bots.models  # noqa: F401
import dispatch.models  # noqa: F401
import registry.assignment.models
import registry.models
import registry.phone_codes
import registry.resources
import registry.staff  # noqa: F401
