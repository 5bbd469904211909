"""Feed fan-out: pushes each published post to the feeds it belongs in (``feed-candidates``).

Source: ``posts-published`` (keyed by post). Side inputs: ``posts-published``
(:class:`PublishedPosts`: a reply's parent), ``follows`` (:class:`FollowGraph`) and ``profiles``
(:class:`UserInterests`). For a post published at ``t`` by creator ``c``:

* **in-network push**: one ``FeedCandidate`` (source IN_NETWORK) per follower of ``c`` at ``t``;
* **pull instead of push** for large creators (the hybrid push/pull of large timeline services):
  when ``c`` has at least ``settings.feed_pull_threshold`` followers at ``t``, nothing is pushed to
  them; the post is written to ``pulled_posts`` and ``c`` to ``pull_creators``, and the read side
  merges it into each follower's feed when the feed is read;
* **reply push** (FULL distribution only): a reply (a post with a parent) to the parent's author,
  source IN_NETWORK: a conversation the user is in (on the Stack Exchange history, 18 % of the
  evaluated engagements are with answers to the user's own questions);
* **interest push** (FULL distribution only): to the ``settings.feed_interest_push`` users whose
  interest vectors at ``t`` are nearest to the post's (cosine at least
  ``settings.feed_interest_min_similarity``), source INTEREST, with the similarity, among the
  users active in the last ``settings.feed_active_days`` (a profile in that window; 0: everyone).
  Pushing to dormant accounts costs a re-rank each and is wasted: their feed is re-ranked when
  they come back (large timeline services skip inactive users in fan-out for the same reason),
  while the active users' feeds would otherwise stay without the new post until their next
  event. A RESTRICTED post reaches followers only.

A candidate's id is derived from the publish event and the user, so a re-delivery or replay
writes the same events. The creator never receives their own post.
"""
from __future__ import annotations

from agents.shared.posts import PostFacts, PostVectors, PublishedPosts, open_published, open_vectors
from agents.shared.social import open_follow_graph, open_user_interests
from models.ranking import relevance as R
from streams.contracts.agent import AgentSpec, Context, Event, SideInput, State
from streams.contracts.effects import Effect, Emit, Upsert

NAME = "feed_fanout"
MODEL = "feed_fanout.push_pull"
MODEL_VERSION = "3"
DAY_MS = 86_400_000


def candidate(ctx: Context, facts: PostFacts, user: str, source: str,
              similarity: float | None, cause: str) -> Emit:
    """The ``FeedCandidate`` event pushing ``facts``' post to ``user``."""
    return Emit("feed-candidates", {
        "event_id": ctx.derive_id(user, cause_event_id=cause),
        "event_time": facts.published_at, "producer": NAME, "cause_event_id": cause,
        "model": MODEL, "model_version": MODEL_VERSION, "user_id": user,
        "post_id": facts.post_id, "creator_id": facts.creator_id, "source": source,
        "similarity": similarity, "published_at": facts.published_at})


def fresh_post(facts: PostFacts, published: PublishedPosts | None,
               vectors: PostVectors | None) -> Upsert:
    """The post's ``fresh_posts`` row: what read-time ranking scores it by
    (:class:`models.ranking.readtime.FreshPost`), as of its publication."""
    t = facts.published_at
    parent = (published.get(facts.parent_post_id, t)
              if facts.parent_post_id and published is not None else None)
    v = vectors.get(facts.post_id, t) if vectors is not None else None
    return Upsert("fresh_posts", {
        "bucket": 0, "published_at": t, "post_id": facts.post_id, "creator_id": facts.creator_id,
        "content_type": facts.content_type, "is_reply": bool(facts.parent_post_id),
        "parent_creator_id": parent.creator_id if parent is not None else None,
        "hashtags": list(published.topic_hashtags(facts, t)) if published is not None else [],
        "categories": dict(facts.categories), "quality": facts.quality,
        "trust": R.creator_trust(*published.standing(facts.creator_id, t)) if published is not None else 1.0,
        "vector": [float(x) for x in v] if v is not None else None,
        "expires_at": facts.expires_at}, t * 1000)


def process(state: State, event: Event, ctx: Context) -> list[Effect]:
    """One published post -> its pushes (and, for a pulled creator, its ``pulled_posts`` row)."""
    if event.topic != "posts-published":
        return []
    facts = PostFacts.of(event.record)
    cfg, t, cause = ctx.config, facts.published_at, event.event_id
    graph, interests = ctx.side.get("follows"), ctx.side.get("interests")
    followers = graph.followers(facts.creator_id, t) if graph is not None else []
    threshold = int(getattr(cfg, "feed_pull_threshold", 10_000))
    out: list[Effect] = []
    pushed = {facts.creator_id}
    if len(followers) >= threshold:
        ts = t * 1000
        out.append(Upsert("pull_creators", {"bucket": 0, "creator_id": facts.creator_id,
                                            "followers": len(followers), "last_post_at": t}, ts))
        out.append(Upsert("pulled_posts", {
            "creator_id": facts.creator_id, "published_at": t, "post_id": facts.post_id,
            "content_type": facts.content_type, "distribution": facts.distribution,
            "quality": facts.quality, "expires_at": facts.expires_at}, ts))
        pushed.update(followers)
    else:
        for user in followers:
            if user not in pushed:
                pushed.add(user)
                out.append(candidate(ctx, facts, user, "IN_NETWORK", None, cause))
    published = ctx.side.get("published")
    if facts.parent_post_id and facts.distribution == "FULL" and published is not None:
        parent = published.get(facts.parent_post_id, t)
        if parent is not None and parent.creator_id not in pushed:
            pushed.add(parent.creator_id)
            out.append(candidate(ctx, facts, parent.creator_id, "IN_NETWORK", None, cause))
    vectors = ctx.side.get("vectors")
    if facts.distribution == "FULL":
        out.append(fresh_post(facts, published, vectors))
    k = int(getattr(cfg, "feed_interest_push", 100))
    if k > 0 and facts.distribution == "FULL" and interests is not None and vectors is not None:
        v = vectors.get(facts.post_id, t)
        if v is not None:
            min_sim = float(getattr(cfg, "feed_interest_min_similarity", 0.0))
            active_days = float(getattr(cfg, "feed_active_days", 7.0))
            since = t - int(active_days * DAY_MS) if active_days > 0 else None
            for user, sim in interests.nearest(v, t, k, min_sim, exclude=pushed, active_since_ms=since):
                out.append(candidate(ctx, facts, user, "INTEREST", sim, cause))
    return out


SPEC = AgentSpec(
    name=NAME,
    topics=("posts-published",),
    process=process,
    outputs=("feed-candidates",),
    side_inputs=(SideInput("published", "posts-published", open_published),
                 SideInput("follows", "follows", open_follow_graph),
                 SideInput("interests", "profiles", open_user_interests),
                 SideInput("vectors", "content-enriched", open_vectors)),
    doc="Pushes published posts to followers and interest-nearest users; pulls large creators.",
    order_sensitive=True,
    batch_size=100,
    sinks=frozenset({"cassandra"}),
)
