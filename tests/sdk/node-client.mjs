// Sends one message of every type through the unmodified @segment/analytics-node SDK, then
// prints what it sent ({messageId: {type, timestamp}}) as JSON for verify.py.
import { Analytics } from '@segment/analytics-node'

const [host, writeKey, runId] = process.argv.slice(2)
const errors = []
const analytics = new Analytics({ writeKey, host, flushAt: 3, maxRetries: 2 })
analytics.on('error', (err) => errors.push(String(err?.reason ?? err?.message ?? err)))

// Events dated an hour back, with millisecond precision, as the SDK serialises them.
const at = (offsetMs) => new Date(Date.now() - 3_600_000 + offsetMs)
const sent = {}
const send = (type, params, offsetMs) => {
  const messageId = `${runId}-node-${type}`
  const timestamp = at(offsetMs)
  sent[messageId] = { type, timestamp: timestamp.toISOString() }
  analytics[type]({ ...params, messageId, timestamp })
}

send('identify', { userId: 'node-user', traits: { profession: 'dentist' } }, 0)
send('track', { userId: 'node-user', event: 'Article Viewed', properties: { id: 7 } }, 10)
send('page', { userId: 'node-user', name: 'Home', properties: { path: '/' } }, 20)
send('screen', { anonymousId: 'node-anon', name: 'Settings' }, 30)
send('group', { userId: 'node-user', groupId: 'clinic-1', traits: { seats: 3 } }, 40)
send('alias', { userId: 'node-user', previousId: 'node-anon' }, 50)

await analytics.closeAndFlush({ timeout: 20_000 })
if (errors.length) {
  console.error('analytics-node reported errors:', errors)
  process.exit(1)
}
console.log(JSON.stringify(sent))
