"""Import every package's models so that ``Base.metadata`` describes the whole schema."""

import dispatch.models  # noqa: F401
import registry.assignment.models
import registry.models  # noqa: F401
