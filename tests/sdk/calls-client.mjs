// Sends group, alias and consent-bearing calls through the unmodified @segment/analytics-node
// SDK for the destinations end-to-end test (crates/inlet-gateway/tests/destinations.rs) and
// prints what it sent as JSON: {messageId: kind}.
import { Analytics } from '@segment/analytics-node'

const [host, writeKey] = process.argv.slice(2)
const errors = []
const analytics = new Analytics({ writeKey, host, flushAt: 20, maxRetries: 5 })
analytics.on('error', (err) => errors.push(String(err?.reason ?? err?.message ?? err)))

const sent = {}
const userId = 'user-0001'
const granted = { consent: { categoryPreferences: { Analytics: true, Advertising: false } } }
const refused = { consent: { categoryPreferences: { Analytics: false } } }
const call = (method, kind, messageId, params) => {
  analytics[method]({ messageId, timestamp: new Date(), ...params })
  sent[messageId] = kind
}
call('group', 'group', 'c-group', { userId, groupId: 'clinic-7', traits: { name: 'Seoul Dental', plan: 'pro' }, context: granted })
call('alias', 'alias', 'c-alias', { userId, previousId: 'guest-0001', context: granted })
for (let i = 0; i < 5; i++) {
  call('track', 'granted', `c-granted-${i}`, { userId, event: 'Case Posted', properties: { seq: `c-granted-${i}` }, context: { ...granted, groupId: 'clinic-7' } })
  call('track', 'refused', `c-refused-${i}`, { userId, event: 'Case Posted', properties: { seq: `c-refused-${i}` }, context: refused })
  call('track', 'rudderstack', `c-rudder-${i}`, { userId, event: 'Case Posted', properties: { seq: `c-rudder-${i}` }, context: { consentManagement: { provider: 'oneTrust', allowedConsentIds: ['Analytics'], deniedConsentIds: ['Advertising'] } } })
  call('track', 'none', `c-none-${i}`, { userId, event: 'Case Posted', properties: { seq: `c-none-${i}` } })
}
call('track', 'bad_ids', 'c-bad-ids', { userId: 'null', anonymousId: 'abc', event: 'Case Posted', properties: { seq: 'c-bad-ids' }, context: granted })
await analytics.closeAndFlush({ timeout: 30_000 })
if (errors.length) {
  console.error('analytics-node reported errors:', errors)
  process.exit(1)
}
console.log(JSON.stringify(sent))
