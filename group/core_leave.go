package group

import "time"

// Leaving: our own Remove proposal, posted as a leave request and proposed
// again in every new epoch (a commit without it made it expire) until a
// commit removes us.

type leaveState struct {
	leaving  bool
	epoch    uint64 // epoch msg was made in
	msg      []byte
	posted   bool // the CS accepted msg
	inflight bool
}

func (c *core) startLeave(token uint64) {
	if c.removed {
		c.emit(actLeaveDone{Token: token, Err: ErrRemoved})
		return
	}
	if !c.joined {
		c.emit(actLeaveDone{Token: token, Err: ErrNotJoined})
		return
	}
	if !c.leave.leaving {
		c.leave.leaving = true
		c.commitAt = time.Time{}
		c.postLeave()
	}
	c.emit(actLeaveDone{Token: token})
}

// postLeave makes (if needed) and sends our Remove proposal for the
// current epoch.
func (c *core) postLeave() {
	if c.removed || c.staged != nil || c.leave.inflight {
		return
	}
	if c.leave.msg == nil || c.leave.epoch != c.epoch {
		msg, err := c.mls.Leave(c.ctx)
		if err != nil {
			c.log.Warn("leave proposal failed", "err", err)
			return
		}
		c.leave.msg, c.leave.epoch, c.leave.posted = msg, c.epoch, false
	}
	c.leave.inflight = true
	c.emit(actPostLeave{Epoch: c.leave.epoch, Proposal: c.leave.msg})
}

func (c *core) leavePosted(epoch uint64, err error) {
	c.leave.inflight = false
	if epoch != c.leave.epoch || c.leave.msg == nil {
		// The epoch moved on while it was posted: afterEpoch made a new
		// proposal, or will at the next poll.
		if c.leave.leaving && !c.leave.posted {
			c.postLeave()
		}
		return
	}
	if err != nil {
		c.log.Warn("leave request failed; will retry", "err", err)
		return
	}
	c.leave.posted = true
}
