"""The JSON Schema of the whole params document, every section's schema gathered (committed as
docs/params.schema.json, for editors):

    python -m tools.params_schema > docs/params.schema.json

Here rather than in `stages`: it imports every section's schema, which no stage may (each would then rerun when any
section's schema changes).
"""

from __future__ import annotations

import json

from pydantic import Field, create_model

from stages.params import Section
from stages.schemas.crf import CRFStageParams
from stages.schemas.cues import CuesParams
from stages.schemas.dense_crf import DenseCRFParams
from stages.schemas.evaluate import EvaluateParams
from stages.schemas.export import ExportParams
from stages.schemas.graph_cut import GraphCutParams
from stages.schemas.prepare import PrepareParams
from stages.schemas.retrain import RetrainLabelsParams, RetrainParams
from stages.schemas.synthesize import SynthesizeParams
from stages.schemas.train_dgcn import TrainDGCNParams

# section of params.yaml -> its schema, in the file's order
SECTIONS: dict[str, type[Section]] = {
    "synthesize": SynthesizeParams,
    "prepare": PrepareParams,
    "graph_cut": GraphCutParams,
    "dense_crf": DenseCRFParams,
    "cues": CuesParams,
    "train_dgcn": TrainDGCNParams,
    "export": ExportParams,
    "crf": CRFStageParams,
    "retrain": RetrainParams,
    "retrain_labels": RetrainLabelsParams,
    "evaluate": EvaluateParams,
}


def json_schema() -> dict:
    """JSON Schema of the whole params document: the DVC templating vars and every section."""
    document = create_model(
        "ParamsDocument",
        __base__=Section,
        __doc__="params.yaml: the shared defaults of every stage section (pipelines/<name>.yaml overrides them).",
        datasets=(list[str], Field(min_length=1, description="the data sets `dvc repro` runs (a DVC var)")),
        synthetic_datasets=(list[str], Field(description="those the `synthesize` stage generates (a DVC var)")),
        **{name: (schema, ...) for name, schema in SECTIONS.items()},
    )
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **document.model_json_schema()}


if __name__ == "__main__":
    print(json.dumps(json_schema(), indent=2, sort_keys=True))
