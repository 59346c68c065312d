"""The mapping assistant: ``field_mappings.yaml`` written and checked from the events (CONTRACT §9).

``python -m amplitude_pipeline.mapping propose SOURCE...`` proposes a mapping from the data;
``validate --mapping MAPPING SOURCE...`` lists what a load through a mapping would stop at. Plain
Python: no Dagster here. :func:`audit_and_propose` gives the key check
(``user_properties_keys_known``) the ``propose --against`` snippet of a week from its own pass.
"""

from amplitude_pipeline.mapping.assistant import audit_and_propose

__all__ = ["audit_and_propose"]
