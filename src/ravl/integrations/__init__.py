"""ravl inside LLM frameworks: retrievers over a collection for LlamaIndex
(:mod:`.llamaindex`, ``pip install 'ravl[llamaindex]'``) and LangChain (:mod:`.langchain`,
``pip install 'ravl[langchain]'``). Both run the search task (:mod:`ravl.tasks.search`) and turn
its hits into the framework's nodes or documents with :func:`.hits.hit_records`."""
