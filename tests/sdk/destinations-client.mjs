// Sends a mix of events through the unmodified @segment/analytics-node SDK for the
// destinations end-to-end test (crates/inlet-gateway/tests/destinations.rs), then prints the
// messageIds it sent with their kind as JSON: {messageId: kind}.
//   i % 10 == 0: track "error"     (GA4 reserves the name: dead letter for GA4)
//   i % 10 == 1: userId "null", anonymousId "abc" (no usable Amplitude id: dead letter for Amplitude)
//   i % 10 == 2: page "Home"; i % 10 == 3: identify; otherwise track "Lesson Completed".
import { Analytics } from '@segment/analytics-node'

const [host, writeKey, prefix, countText] = process.argv.slice(2)
const count = Number(countText)
const errors = []
const analytics = new Analytics({ writeKey, host, flushAt: 20, maxRetries: 5 })
analytics.on('error', (err) => errors.push(String(err?.reason ?? err?.message ?? err)))

const sent = {}
for (let i = 0; i < count; i++) {
  const messageId = `${prefix}-${i}`
  const userId = `user-${i % 7}`
  const properties = { seq: messageId }
  const timestamp = new Date()
  switch (i % 10) {
    case 0:
      analytics.track({ userId, event: 'error', properties, messageId, timestamp })
      sent[messageId] = 'reserved'
      break
    case 1:
      analytics.track({ userId: 'null', anonymousId: 'abc', event: 'Lesson Completed', properties, messageId, timestamp })
      sent[messageId] = 'bad_ids'
      break
    case 2:
      analytics.page({ userId, name: 'Home', properties, messageId, timestamp })
      sent[messageId] = 'page'
      break
    case 3:
      analytics.identify({ userId, traits: { profession: 'dentist' }, messageId, timestamp })
      sent[messageId] = 'identify'
      break
    default:
      analytics.track({ userId, event: 'Lesson Completed', properties, messageId, timestamp })
      sent[messageId] = 'track'
  }
}
await analytics.closeAndFlush({ timeout: 30_000 })
if (errors.length) {
  console.error('analytics-node reported errors:', errors)
  process.exit(1)
}
console.log(JSON.stringify(sent))
