"""Sharing: merge the adapter, write the model card, check the merged model reproduces the evaluation,
and push to the Hub (``share``). Sits above evaluation, whose predictions it reproduces."""
