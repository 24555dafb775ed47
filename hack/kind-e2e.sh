#!/usr/bin/env bash
# End-to-end test on a kind cluster (`make kind-e2e`; needs Docker, kind,
# kubectl, curl and Go):
#   1. create a kind cluster, build the image and load it into the cluster;
#   2. helm install the chart into a namespace that enforces the "restricted"
#      Pod Security Standard;
#   3. apply a ChatRoom with two chat pods and wait for it to be Available;
#   4. port-forward to each chat pod and run test/e2e's TestChat: two users,
#      one per pod, chat; one pod is deleted mid-conversation; every acked
#      message must reach both users exactly once, in order;
#   5. delete the ChatRoom and check everything it owned is gone.
#
# Settings (environment):
#   KIND_CLUSTER   cluster name                     (hubbub-e2e)
#   IMG            image to build and load          (hubbub:e2e)
#   NAMESPACE      namespace of operator and room   (hubbub-e2e)
#   KEEP_CLUSTER=1 keep the cluster afterwards (to look around); an existing
#                  cluster of that name is reused and never deleted
#   HELM           helm binary                      (bin/helm, built by `make helm`)
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=${KIND_CLUSTER:-hubbub-e2e}
IMG=${IMG:-hubbub:e2e}
NS=${NAMESPACE:-hubbub-e2e}
HELM=${HELM:-bin/helm}
ROOM=e2e
PORTS=(18080 18081)
WORK=$(mktemp -d)

say() { printf '\n== %s\n' "$*"; }
die() { printf 'kind-e2e: %s\n' "$*" >&2; exit 1; }

for tool in docker kind kubectl curl go; do
  command -v "$tool" >/dev/null || die "$tool is not installed (needed: docker, kind, kubectl, curl, go)"
done
docker info >/dev/null 2>&1 || die "docker is installed but its daemon does not answer (is it running, may you use it?)"
[[ -x $HELM ]] || make helm
[[ $IMG == *:* && ${IMG##*:} != */* ]] || die "IMG=$IMG needs a tag (name:tag)"

# Compile the chat test first: a build error should not cost a cluster.
go test -c -tags e2e -o "$WORK/e2e.test" ./test/e2e

created_cluster=0
forwarders=()
cleanup() {
  local rc=$?
  for pid in "${forwarders[@]}"; do
    pkill -P "$pid" 2>/dev/null || true # the loop's kubectl
    kill "$pid" 2>/dev/null || true
  done
  if ((rc != 0)) && kubectl get namespace "$NS" >/dev/null 2>&1; then
    say "failed; state of namespace $NS"
    kubectl -n "$NS" get chatrooms,all,configmaps,secrets,networkpolicies,pvc -o wide || true
    kubectl -n "$NS" describe chatroom "$ROOM" || true
    kubectl -n "$NS" logs deployment/hubbub-operator --tail=100 || true
    tail -n 20 "$WORK"/*.log 2>/dev/null || true
  fi
  if ((created_cluster)) && [[ ${KEEP_CLUSTER:-0} != 1 ]]; then
    say "deleting cluster $CLUSTER"
    kind delete cluster --name "$CLUSTER" || true
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT

say "cluster $CLUSTER"
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  echo "reusing the existing cluster"
else
  kind create cluster --name "$CLUSTER" --wait 120s
  created_cluster=1
fi
kubectl config use-context "kind-$CLUSTER"

say "image $IMG"
make docker-build IMG="$IMG"
kind load docker-image "$IMG" --name "$CLUSTER"

say "helm install into $NS (Pod Security: restricted)"
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -
kubectl label --overwrite namespace "$NS" \
  pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/warn=restricted
"$HELM" upgrade --install hubbub charts/hubbub --namespace "$NS" --wait --timeout 3m \
  --set image.repository="${IMG%:*}" --set image.tag="${IMG##*:}" --set image.pullPolicy=IfNotPresent

say "ChatRoom $ROOM"
kubectl -n "$NS" apply -f - <<YAML
apiVersion: chat.hubbub.dev/v1alpha1
kind: ChatRoom
metadata:
  name: $ROOM
spec:
  replicas: 2
  imagePullPolicy: IfNotPresent
  channels: [general]
YAML
kubectl -n "$NS" wait "chatroom/$ROOM" --for=condition=Available --timeout=5m
kubectl -n "$NS" get chatroom "$ROOM"
uid=$(kubectl -n "$NS" get chatroom "$ROOM" -o jsonpath='{.metadata.uid}')
selector=$(kubectl -n "$NS" get chatroom "$ROOM" -o jsonpath='{.status.selector}')
read -r -a pods <<<"$(kubectl -n "$NS" get pods -l "$selector" --field-selector=status.phase=Running \
  -o jsonpath='{.items[*].metadata.name}')"
((${#pods[@]} >= 2)) || die "want 2 running chat pods for selector $selector, found: ${pods[*]:-none}"

# forward PORT POD: forward localhost:PORT to POD's chat port. When the
# forward ends (its pod was deleted) forward to the Service instead, which
# picks a live pod, as a load balancer would for a reconnecting browser.
forward() {
  local port=$1 target=pod/$2 remote=8080
  while true; do
    kubectl -n "$NS" port-forward "$target" "$port:$remote" >>"$WORK/forward-$port.log" 2>&1 || true
    target=service/$ROOM remote=80
    sleep 1
  done
}
urls=()
for i in 0 1; do
  forward "${PORTS[$i]}" "${pods[$i]}" &
  forwarders+=($!)
  urls+=("http://127.0.0.1:${PORTS[$i]}")
done
for url in "${urls[@]}"; do
  for _ in $(seq 60); do curl -fsS "$url/readyz" >/dev/null 2>&1 && break; sleep 1; done
  curl -fsS "$url/readyz" >/dev/null || die "$url/readyz does not answer through port-forward"
done

say "chat: ${pods[0]} (user 1) and ${pods[1]} (user 2); ${pods[0]} is deleted midway"
HUBBUB_E2E_URL=$(IFS=,; echo "${urls[*]}") HUBBUB_E2E_EXPECT_DISCONNECT=1 \
  HUBBUB_E2E_MIDWAY_FILE="$WORK/midway" \
  "$WORK/e2e.test" -test.run '^TestChat$' -test.v -test.timeout 6m &
chat=$!
while [[ ! -e $WORK/midway ]]; do
  kill -0 "$chat" 2>/dev/null || break # it ended (failed) before midway
  sleep 0.5
done
if [[ -e $WORK/midway ]]; then
  kubectl -n "$NS" delete pod "${pods[0]}" --wait=false
  # Its forward is now useless; end it so the loop forwards to the Service
  # (kubectl port-forward does not always exit when its pod goes away).
  pkill -P "${forwarders[0]}" || true
fi
wait "$chat" || die "the chat e2e test failed"

say "delete ChatRoom $ROOM; everything it owned must go"
kinds=$(kubectl api-resources --verbs=list,delete --namespaced -o name | paste -sd, -)
# owned prints kind/name of every object in $NS with an owner reference to
# the room, and the room's chat pods (owned through their ReplicaSet).
# shellcheck disable=SC2016 # $o is the template's variable, not the shell's
template='{{range .items}}{{$o := .}}{{range .metadata.ownerReferences}}{{if eq .uid "UID"}}{{$o.kind}}/{{$o.metadata.name}}{{"\n"}}{{end}}{{end}}{{end}}'
template=${template/UID/$uid}
owned() {
  kubectl -n "$NS" get "$kinds" -o go-template="$template" 2>>"$WORK/owned.log" || true
  kubectl -n "$NS" get pods -l "$selector" -o name
}
before=$(owned)
printf '%s\n' "$before" | sed 's/^/  /'
grep -q '^Deployment/' <<<"$before" || die "found no Deployment owned by ChatRoom $ROOM"
kubectl -n "$NS" delete chatroom "$ROOM" --wait=true --timeout=2m
# Garbage collection is asynchronous: poll for up to two minutes.
for _ in $(seq 120); do [[ -z $(owned) ]] && break; sleep 1; done
[[ -z $(owned) ]] || die "still there after the ChatRoom was deleted: $(owned | paste -sd' ' -)"

say "kind e2e passed"
