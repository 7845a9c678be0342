-- Argo CD health check for hatrack.dev IAMRoleBinding and IAMGuardrail (the same script for
-- both kinds). Healthy: the controller saw the current generation and Ready is True.
-- Progressing: no status yet, an older generation observed, or a binding being deleted.
-- Degraded: Ready is False (Stalled True when only a change of the spec or cluster helps).
local hs = {}
local generation = obj.metadata.generation
if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the hatrack controller to report status"
  return hs
end
if generation ~= nil and obj.status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the hatrack controller to observe generation " .. tostring(generation)
  return hs
end
local ready = nil
local stalled = nil
for _, condition in ipairs(obj.status.conditions) do
  if condition.type == "Ready" then
    ready = condition
  elseif condition.type == "Stalled" then
    stalled = condition
  end
end
if ready == nil or (generation ~= nil and ready.observedGeneration ~= nil and ready.observedGeneration ~= generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the hatrack controller's Ready condition"
  return hs
end
local message = (ready.reason or "") .. ": " .. (ready.message or "")
if ready.status == "True" then
  hs.status = "Healthy"
elseif stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
elseif ready.reason == "Deleting" then
  hs.status = "Progressing"
else
  -- Ready False for a reason the controller retries (AwsError): failing, and retried.
  hs.status = "Degraded"
end
hs.message = message
return hs
