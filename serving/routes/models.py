"""GET /v1/models: what each variant serves, its traffic share and load errors."""

from __future__ import annotations

from fastapi import APIRouter

from serving.deps import PredictCaller, StateDep
from serving.schemas import ModelsResponse, VariantInfo

router = APIRouter(tags=["models"])


@router.get("/v1/models", response_model=ModelsResponse)
async def list_models(state: StateDep, _caller: PredictCaller) -> ModelsResponse:
    """Variants in routing order with the model version each one serves now."""
    weights = state.router.weights()
    shadows = set(state.settings.shadow_variants)
    infos = []
    for variant, uri in state.variants.uris.items():
        model = state.variants.get(variant)
        infos.append(
            VariantInfo(
                variant=variant,
                uri=uri,
                weight=weights.get(variant, 0.0),
                shadow=variant in shadows,
                loaded=model is not None,
                model=model.describe() if model else None,
                error=state.variants.errors.get(variant),
            )
        )
    return ModelsResponse(default_variant=state.variants.default, variants=infos)
