package group

import (
	"fmt"
	"slices"

	"github.com/moqsframe/moqsframe/coord/wire"
)

// Requests (join and leave) from the RequestTrack or the archive, handled
// strictly in sequence order.

// buffer stores an arrived commit, Welcome or request until its turn.
func (c *core) buffer(t track, num uint64, data []byte, src source) {
	switch t {
	case trackCommit:
		if src == fromMoQ && c.badMoQ[num] {
			return // a failed MoQ object for this epoch: only the archive's counts
		}
		if !c.joined || num >= c.epoch {
			c.commits[num] = buffered{data: data, src: src}
		}
	case trackWelcome:
		if !c.joined && !c.welcomeDone[num] {
			c.welcomes[num] = buffered{data: data, src: src}
		}
	case trackRequest:
		if num >= c.nextSeq {
			c.requests[num] = data
		}
	}
}

// applyRequests handles requests in sequence order: joins are remembered
// for committing, leave proposals are processed (mls-go commits them by
// reference, so every member needs them) in their epoch.
func (c *core) applyRequests() {
	for {
		data, ok := c.requests[c.nextSeq]
		if !ok {
			return
		}
		delete(c.requests, c.nextSeq)
		c.nextSeq++
		req, err := wire.UnmarshalRequest(data)
		if err != nil || string(req.GroupID) != c.cfg.Group {
			continue
		}
		switch req.Type {
		case wire.RequestJoin:
			// Every member checks every joiner (the CS did too): a
			// committer never adds a credential the others would refuse.
			id, err := c.mls.KeyPackageIdentity(req.Body)
			if err != nil {
				c.refuse(fmt.Errorf("group: join request %d: %w", c.nextSeq-1, err))
				continue
			}
			if id.Name == c.cfg.Identity {
				continue // our own, or our successor's after a restart: others add it
			}
			c.joins = slices.DeleteFunc(c.joins, func(j pendingJoin) bool { return j.name == id.Name })
			c.parked = slices.DeleteFunc(c.parked, func(j pendingJoin) bool { return j.name == id.Name })
			c.joins = append(c.joins, pendingJoin{name: id.Name, fingerprint: id.FingerprintHex(), kp: req.Body, seen: c.now})
		case wire.RequestLeave:
			e, leaf, err := wire.ProposalSender(req.Body)
			if err != nil || e < c.epoch {
				continue
			}
			if c.leaves[e] == nil {
				c.leaves[e] = map[uint32][]byte{}
			}
			c.leaves[e][leaf] = req.Body
			if e == c.epoch {
				c.processLeave(req.Body)
			}
		}
	}
}

// processLeave stores another member's leave proposal of the current epoch.
func (c *core) processLeave(msg []byte) {
	if c.staged != nil {
		return // processed after the staged commit is resolved (see afterEpoch)
	}
	if err := c.mls.ProcessProposal(c.ctx, msg); err != nil {
		// Our own proposal is already stored; duplicates fail harmlessly.
		c.log.Debug("leave proposal not stored", "err", err)
	}
}

// selectJoins decides which pending joins the next commit adds: those
// whose identity is not a member, and those whose identity is a member with
// another certificate (a restarted member: its old leaf is replaced).
// A join with the certificate of a member (a member killed and restarted
// with its certificate) is parked until that leaf is gone: mls-go refuses
// an Add whose signature key is in the tree, even next to its Remove, so
// the silent leaf is removed by one commit and the join added by the next.
// members maps the current epoch's names to their certificate fingerprints.
func (c *core) selectJoins(members map[string]string) []pendingJoin {
	var out []pendingJoin
	for _, j := range c.joins {
		if fp, in := members[j.name]; !in || fp != j.fingerprint {
			out = append(out, j)
		}
	}
	return out
}

// dropJoined forgets pending joins whose certificate is now a member's,
// and takes back parked joins whose certificate is no longer a member's.
func (c *core) dropJoined() {
	c.joins = slices.DeleteFunc(c.joins, func(j pendingJoin) bool { return c.prevIDs[j.name+"/"+j.fingerprint] })
	c.unpark(func(j pendingJoin) bool { return !c.prevIDs[j.name+"/"+j.fingerprint] })
}

// park keeps the joins a commit does not add because their certificate is
// a live member's (members: name -> fingerprint; added: names the commit adds).
func (c *core) park(members map[string]string, added map[string]bool) {
	for _, j := range c.joins {
		if fp, in := members[j.name]; in && fp == j.fingerprint && !added[j.name] {
			c.parked = slices.DeleteFunc(c.parked, func(p pendingJoin) bool { return p.name == j.name })
			c.parked = append(c.parked, j)
		}
	}
}

// unpark moves the parked joins for which take holds back to the pending ones.
func (c *core) unpark(take func(pendingJoin) bool) {
	c.parked = slices.DeleteFunc(c.parked, func(j pendingJoin) bool {
		if !take(j) {
			return false
		}
		c.joins = slices.DeleteFunc(c.joins, func(o pendingJoin) bool { return o.name == j.name })
		c.joins = append(c.joins, j)
		return true
	})
}
