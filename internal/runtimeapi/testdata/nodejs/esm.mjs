export const handler = async (event) => ({ esm: true, event });
