export { Analytics } from './analytics';
export { LIBRARY } from './context';
export type { Callback, CallOptions, ConsentPreferences, LoadOptions, Message, MessageType, Traits } from './types';
